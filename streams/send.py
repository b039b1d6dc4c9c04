"""Sending a batch's outputs until the broker has acknowledged each one.

One loop for every worker that writes to Kafka (classify, refine, teacher). A delivery can
fail after ``send`` returned (batch expiry, a record the broker refuses, an authorization
error), so each send's future is awaited; ``flush`` reports none of that. Three outcomes:

- retriable (an outage outlived the request timeout, a leader change, the Schema Registry
  unreachable): re-sent with backoff;
- too large (the producer's ``max_request_size`` or the topic's ``max.message.bytes``): the
  output is replaced by a dead letter that carries the input it answers (bounded, so it
  fits), reason ``output_too_large`` — one oversized record must never stop a group;
- anything else (a missing ACL, the Schema Registry refusing a schema, a bug):
  ``FatalSendError``; the caller exits without acking, and the supervisor restarts it.

With a Schema Registry in use, each output is framed for it here (``schemas.registry``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from schemas.registry import frame
from schemas.serde import encode
from streams.decode import DEAD_LETTER_VALUE_BYTES, RawEvent, dead_letter

log = logging.getLogger(__name__)

FATAL_EXIT = 70  # EX_SOFTWARE: a non-retriable send error; nothing of the batch was acked
TOO_LARGE = "output_too_large"


class Output(NamedTuple):
    """One record to send. ``origin`` is the input it answers: what a dead letter carries if
    the broker refuses this output as too large. With ``event_time`` the output keeps the
    origin's record timestamp, as Kafka Streams does: the internal topics (refine, teacher,
    verdicts) do, so that the trainer orders verdicts by their event's time whatever order
    the teacher answered in; results and dead letters are stamped when they are sent (what
    a consumer, and ``bench stream``'s latency, read)."""

    topic: str  # the full topic name (prefix included)
    key: bytes | None
    value: bytes
    origin: RawEvent | None = None
    task: str | None = None
    event_time: bool = False

    @property
    def timestamp_s(self) -> float | None:
        """The record timestamp to send, in seconds (faust's unit); None: the send time."""
        stamp = self.origin.timestamp_ms if self.origin is not None and self.event_time else None
        return stamp / 1000.0 if stamp is not None and stamp >= 0 else None


class FatalSendError(Exception):
    """A send failed in a way retrying cannot fix; the process must exit without acking."""


def is_retriable(exc: BaseException) -> bool:
    """aiokafka marks its errors ``retriable``; a batch that expired (``KafkaTimeoutError``,
    not so marked) is retried too: an outage outlived the request timeout."""
    from aiokafka.errors import KafkaTimeoutError

    if isinstance(exc, KafkaTimeoutError | TimeoutError):
        return True
    return bool(getattr(exc, "retriable", False))


def is_too_large(exc: BaseException) -> bool:
    """The producer (``max_request_size``) or the broker (``max.message.bytes``) refused a
    record for its size."""
    from aiokafka import errors as aio
    from kafka import errors as kp

    kinds = (aio.MessageSizeTooLargeError, aio.RecordTooLargeError,
             aio.RecordListTooLargeError, kp.MessageSizeTooLargeError,
             kp.RecordListTooLargeError)
    return isinstance(exc, kinds)


class AiokafkaSender:
    """aiokafka's producer with the positional ``send(topic, key, value, partition, ...)``
    of faust's producer, so one loop serves both."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   partition: int | None = None, timestamp: float | None = None,
                   *_: Any) -> Any:
        stamp = int(timestamp * 1000.0) if timestamp is not None else None
        return await self.producer.send(topic, value=value, key=key, partition=partition,
                                        timestamp_ms=stamp)


def _in_place_of(out: Output, exc: BaseException, deadletter_topic: str,
                 keep_bytes: int) -> Output:
    origin = out.origin or RawEvent(out.topic, -1, -1, out.key, out.value)
    reason = (f"the output for {out.topic} ({len(out.value)} bytes) was refused as too "
              f"large: {type(exc).__name__}: {exc}")
    log.warning("dead-lettering %s[%s]@%s: %s", origin.topic, origin.partition, origin.offset,
                reason)
    letter = dead_letter(out.task, origin, TOO_LARGE, reason, keep_bytes)
    return Output(deadletter_topic, out.key[:1024] if out.key else out.key, encode(letter),
                  None, out.task)


async def send_until_acknowledged(producer: Any, outputs: list[Output], *,
                                  deadletter_topic: str | None = None,
                                  partition: int | None = None,
                                  keep_bytes: int = DEAD_LETTER_VALUE_BYTES,
                                  max_delay_s: float = 5.0) -> int:
    """Send ``outputs`` (to ``partition`` if given) until each one is acknowledged.

    The broker refuses a whole produce batch when it is over ``max.message.bytes``, so an
    output refused as too large in a batch is sent again alone; only one refused alone (or
    by the producer before it was queued) is too large itself. That one goes as a dead letter
    to ``deadletter_topic`` instead (without one, it is fatal). Returns how many did.
    """
    pending = [(out, False) for out in outputs]  # (output, send it alone)
    delay, replaced = 0.2, 0
    while pending:
        together = [out for out, alone in pending if not alone]
        apart = [out for out, alone in pending if alone]
        results = await _send_batch(producer, together, partition)
        for out in apart:  # one at a time: each in a produce request of its own
            results += await _send_batch(producer, [out], partition)
        sent = [(out, False) for out in together] + [(out, True) for out in apart]
        retry: list[tuple[Output, bool]] = []
        retriable = 0
        for (out, alone), (outcome, unsent) in zip(sent, results, strict=True):
            if not isinstance(outcome, BaseException):
                continue
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if is_retriable(outcome):
                retry.append((out, alone))
                retriable += 1
            elif not is_too_large(outcome) or deadletter_topic is None:
                raise FatalSendError(f"sending to {out.topic} failed: "
                                     f"{type(outcome).__name__}: {outcome}") from outcome
            elif not (alone or unsent or len(together) == 1):
                retry.append((out, True))  # perhaps only its batch was too large
            elif out.topic != deadletter_topic:
                retry.append((_in_place_of(out, outcome, deadletter_topic, keep_bytes), True))
                replaced += 1
            else:
                raise FatalSendError(f"a dead letter for {out.topic} is too large: "
                                     f"{outcome}") from outcome
        if retriable:
            log.warning("%d of %d outputs not acknowledged; re-sending them in %.1fs",
                        retriable, len(pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
        pending = retry
    return replaced


async def _send_batch(producer: Any, outputs: list[Output],
                      partition: int | None) -> list[tuple[Any, bool]]:
    """Queue every output, then await them: (the metadata or the exception, whether the
    producer refused it before queueing — then it alone was the cause) for each."""
    queued: list[Any] = []
    for out in outputs:
        try:
            value = frame(out.topic, out.value)  # Confluent's header if a registry is in use
            queued.append(await producer.send(out.topic, out.key, value, partition,
                                              out.timestamp_s, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused before it was queued
            queued.append(exc)
    futures = [q for q in queued if not isinstance(q, BaseException)]
    done = iter(await asyncio.gather(*futures, return_exceptions=True))
    return [(q, True) if isinstance(q, BaseException) else (next(done), False) for q in queued]
