"""Re-drive dead letters back to the topic they came from (``distillery deadletter replay``).

Once the cause is fixed (a proxy that refused everything, a label set that lacked a class),
the dead letters of ``<prefix>deadletter`` are produced again to their source topic, keyed as
they were: the original bytes when the letter holds them whole, else the record at the
letter's source offset (checked against the letter's size and sha256). Only the tasks' own
input, refine and teacher topics are written to: a letter naming any other topic is skipped.

A consumer group (``<prefix>distillery-deadletter-replay``) remembers how far the replays
got: each run re-drives what arrived since the last, up to the topic's end when it started,
and commits only after the broker acknowledged every record it produced (at-least-once: a
run cut short re-drives some letters again; the teacher's memory answers a repeated request
without paying twice). ``from_beginning`` starts again from the first letter.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distillery.errors import BrokerError, DistilleryError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import DeadLetter
from schemas.serde import decode
from streams.topics import DEADLETTER_TOPIC


@dataclass
class Redrive:
    """What one run did, by the letters' error kinds."""

    scanned: int = 0
    replayed: Counter[str] = field(default_factory=Counter)
    from_source: int = 0  # re-read at the source offset (the letter kept a prefix only)
    skipped: Counter[str] = field(default_factory=Counter)  # filtered out, by kind
    lost: list[str] = field(default_factory=list)  # neither whole nor at the source any more

    def as_dict(self) -> dict[str, Any]:
        return {"scanned": self.scanned, "replayed": dict(self.replayed),
                "from_source": self.from_source, "skipped": dict(self.skipped),
                "not_recoverable": self.lost}


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}distillery-deadletter-replay"


def redrive(settings: Settings, tasks: list[TaskConfig], *, kinds: set[str] | None = None,
            from_beginning: bool = False, dry_run: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Redrive:
    """Re-drive the dead letters of ``tasks`` (of ``kinds``, or all) to their sources."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    names = {t.name for t in tasks}
    targets = {settings.topic(name) for t in tasks
               for name in (t.input_topic, t.refine_topic, t.teacher_topic)}
    topic = settings.topic(DEADLETTER_TOPIC)
    kw = settings.kafka_python_kwargs()
    result = Redrive()
    try:
        consumer = KafkaConsumer(group_id=group_id(settings), enable_auto_commit=False,
                                 auto_offset_reset="earliest", client_id="distillery-redrive",
                                 **kw)
        producer = None if dry_run else KafkaProducer(
            client_id="distillery-redrive", **settings.kafka_python_producer_kwargs())
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            raise BrokerError(f"topic {topic} does not exist (run `distillery topics create`)",
                              retriable=False)
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        for tp in tps:
            committed = None if from_beginning else consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        total = sum(max(0, end[tp] - consumer.position(tp)) for tp in tps)
        sends = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                for message in messages:
                    if message.offset >= end[tp]:
                        consumer.seek(tp, end[tp])
                        break
                    result.scanned += 1
                    sent = _one(settings, message.value, names, targets, kinds, result,
                                producer, kw)
                    if sent is not None:
                        sends.append(sent)
                    if progress is not None:
                        progress(result.scanned, total)
        if producer is not None:
            producer.flush()
            for future in sends:
                future.get(timeout=30)  # raises if the broker refused it
            consumer.commit({tp: _offset(end[tp]) for tp in tps})
    except KafkaError as exc:
        raise BrokerError(f"re-driving dead letters failed: {exc}; nothing was committed, "
                          "run it again", retriable=True) from exc
    finally:
        consumer.close()
        if producer is not None:
            producer.close()
    return result


def _one(settings: Settings, raw: bytes | None, tasks: set[str], targets: set[str],
         kinds: set[str] | None, result: Redrive, producer: Any, kw: dict[str, Any]) -> Any:
    """Re-drive one letter (the send's future), or count why not (None)."""
    try:
        letter = decode(raw or b"", DeadLetter)
    except DistilleryError:
        result.skipped["unreadable letter"] += 1
        return None
    if letter.task not in tasks or (kinds is not None and letter.error_kind not in kinds):
        result.skipped[letter.error_kind] += 1
        return None
    if letter.source_topic not in targets:
        result.skipped[f"{letter.error_kind} (from {letter.source_topic}: not an input)"] += 1
        return None
    value = _whole(letter)
    if value is None:
        value = _at_source(letter, kw)
        if value is None:
            result.lost.append(f"{letter.source_topic}[{letter.partition}]@{letter.offset}")
            return None
        result.from_source += 1
    result.replayed[letter.error_kind] += 1
    if producer is None:
        return None
    return producer.send(letter.source_topic, key=letter.key, value=value)


def _whole(letter: DeadLetter) -> bytes | None:
    """The original bytes, if the letter holds all of them."""
    if letter.value_size not in (-1, len(letter.value)):
        return None
    if letter.value_sha256 and hashlib.sha256(letter.value).hexdigest() != letter.value_sha256:
        return None
    return letter.value


def _at_source(letter: DeadLetter, kw: dict[str, Any]) -> bytes | None:
    """The record at the letter's source offset, if it is still there and is the same."""
    from kafka import KafkaConsumer, TopicPartition

    if letter.partition < 0 or letter.offset < 0:
        return None
    tp = TopicPartition(letter.source_topic, letter.partition)
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **kw)
    try:
        consumer.assign([tp])
        consumer.seek(tp, letter.offset)
        for message in consumer.poll(timeout_ms=5000, max_records=1).get(tp, []):
            value: bytes = message.value or b""
            if message.offset == letter.offset and (
                    not letter.value_sha256
                    or hashlib.sha256(value).hexdigest() == letter.value_sha256):
                return value
        return None
    finally:
        consumer.close()


def _offset(position: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(position, "", -1)
