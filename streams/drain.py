"""faust's fetch loop without four asyncio tasks per message.

faust-streaming 0.15 hands every fetched message to its conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: mode's
``wait_first`` wraps the callback, the flow-suspension event and the service's stopped and
crashed events in four tasks and an ``asyncio.wait`` — per message. Measured here with a
no-op ``take_events`` agent over 40,000 pre-produced messages (12 partitions, alternating
runs on one busy machine): 2,563–5,537 events/s as shipped, 3,543–8,763 with this loop
(1.4–1.7× in every pair); it was the largest single cost of the classify worker's faust
layer (README, "Benchmarks").

The callback almost never waits: the conductor looks up the channel and puts the event on
its queue, which pauses partitions on back-pressure rather than blocking. So ``run_inline``
starts the callback's coroutine in place; only if it suspends (a lock held during a
rebalance, a full queue) is the rest of it raced against ``suspend_flow`` exactly as faust
does, so a rebalance can still abandon a blocked delivery. Everything else in the loop —
read offsets, gaps for acking topics, commits every ``broker_commit_every`` acks, a yield
to the event loop every 100 messages — is kept as faust has it.

Topics named in ``DrainApp(batch_topics=...)`` go one step further: the messages of such a
topic that one fetch returns are delivered to its channel as *one* message, a
``MessageBatch`` whose value is the list of the fetched ``ConsumerMessage``s. faust's
per-message delivery path (the conductor's flow-control waits, an ``Event``, a queue put,
one pass of the stream with its sensors, an ack) then runs once per fetch instead of once
per message — it cost the classify worker more per event than decoding, inference and
routing together. Each fetched message is still acked one by one, by the agent, once its
outputs are acknowledged (``ack_batch``), so faust commits them exactly as if they had come
singly; a batch not acked is redelivered whole.

``DrainApp`` is a ``faust.App`` whose Kafka transport uses this consumer; nothing else
changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ConsumerMessage

YIELD_EVERY = 100  # messages between yields to the event loop, as in faust


class _Rest(Awaitable[Any]):
    """The rest of a coroutine that was started in place and suspended at ``pending``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        value = self.pending
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                self.coro.close()
                raise
            except BaseException as exc:  # cancelled (or thrown into): pass it on
                try:
                    value = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Rest(coro, pending)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def run_inline(coro: Awaitable[Any]) -> Coroutine[Any, Any, Any] | None:
    """Run a coroutine in place up to its first suspension.

    Returns None if it finished (its exception, if any, is raised here), else a coroutine
    that finishes it when awaited (in a task or directly). Any other awaitable is returned
    to be awaited as it is.
    """
    if not isinstance(coro, Coroutine):
        return _await(coro)
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, pending)


class MessageBatch(ConsumerMessage):  # type: ignore[misc]
    """The messages of one topic from one fetch, delivered to its channel as one message.

    It stands for the last of them (topic, partition, offset, generation); ``messages`` (also
    its ``value``) holds them all, in fetch order. It is born acked, so that faust never
    acks it: faust's compiled stream iterator acks a message's own offset inline (it does not
    call ``on_final_ack``), which here would mark the last message done, whatever became of
    the others. Its reader acks the messages with ``ack_batch`` once they are processed;
    a batch nobody acks (a failed send, a cancellation, a batch the stream skipped after a
    rebalance) leaves every offset in it uncommitted, to be delivered again.
    """

    __slots__ = ()

    def __init__(self, messages: list[ConsumerMessage]) -> None:
        last = messages[-1]
        super().__init__(
            last.topic, last.partition, last.offset, last.timestamp, last.timestamp_type,
            None, None, messages, None, 0,  # type: ignore[arg-type]
            sum(m.serialized_value_size or 0 for m in messages), last.tp,
            generation_id=last.generation_id,
        )
        self.acked = True

    @property
    def messages(self) -> list[ConsumerMessage]:
        return cast("list[ConsumerMessage]", self.value)


def ack_batch(consumer: Any, batch: MessageBatch) -> None:
    """Ack every message of ``batch``: faust may now commit their offsets."""
    consumer._unacked_messages.discard(batch)  # the stream tracked it in their place
    for message in batch.messages:
        consumer.ack(message)
    consumer.app.sensors.on_message_out(batch.tp, batch.offset, batch)


class DrainConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """faust's aiokafka consumer with a fetch loop that starts each delivery in place."""

    async def _deliver(self, callback: Any, message: Any) -> None:  # pragma: no cover
        rest = run_inline(callback(message))
        if rest is not None:
            await self.wait_first(rest, self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs faust
        callback = self.callback
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        # delivered a fetch at a time (MessageBatch)
        batch_topics = cast("DrainApp", self.app).batch_topics
        since_yield = 0
        try:
            while not (stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                batches: dict[str, list[Any]] = {}
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already delivered (faust drops it too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in batch_topics:
                        batches.setdefault(message.topic, []).append(message)
                    else:
                        await self._deliver(callback, message)
                    read_offset[tp] = offset
                for messages in batches.values():
                    await self._deliver(callback, MessageBatch(messages))
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class DrainTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = DrainConsumer


class DrainApp(faust.App):  # type: ignore[misc]
    """A faust app whose consumer is ``DrainConsumer`` (for ``kafka://`` brokers).

    ``batch_topics``: topics whose channels get a ``MessageBatch`` per fetch (their
    agents read ``event.message.messages``); the batch size is bounded by
    ``broker_max_poll_records``."""

    def __init__(self, *args: Any, batch_topics: frozenset[str] = frozenset(),
                 **kwargs: Any) -> None:
        self.batch_topics = batch_topics
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        if getattr(url, "scheme", "kafka") not in ("kafka", "aiokafka"):
            return super()._new_transport()
        return DrainTransport(self.conf.broker_consumer, self)
