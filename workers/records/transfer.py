"""Produce records from a file to a topic, and consume a topic as JSON lines.

Plain functions over kafka-python clients; ``workers/cli_kafka.py`` wraps them in commands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from distillery.errors import BrokerError, DistilleryError
from distillery.settings import Settings
from schemas.records import Record
from schemas.serde import WireFormat, decode_any, encode
from workers.records.files import Rejection, read_records


@dataclass
class ProduceSummary:
    produced: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def make_producer(settings: Settings) -> Any:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(
            acks="all", linger_ms=5, client_id="distillery-cli", **settings.kafka_python_kwargs()
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc


def produce_file(
    settings: Settings,
    topic: str,
    stream: TextIO,
    fmt: str,
    cls: type[Record],
    mapping: dict[str, str],
    on_line: Callable[[], None] = lambda: None,
    wire: WireFormat = "avro",
) -> ProduceSummary:
    """Validate, encode (Avro or JSON) and send every line of ``stream``; keyed by record id."""
    summary = ProduceSummary()
    producer = make_producer(settings)
    try:
        for _, item in read_records(stream, fmt, cls, mapping, settings.max_text_chars):
            on_line()
            if isinstance(item, Rejection):
                summary.rejected.append(item)
                continue
            key = getattr(item, "id", None) or getattr(item, "task", None)
            producer.send(topic, key=str(key).encode() if key else None, value=encode(item, wire))
            summary.produced += 1
        producer.flush()
    finally:
        producer.close()
    return summary


def consume_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    max_records: int | None,
    timeout_s: float | None,
    group: str | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> tuple[int, int]:
    """Print decoded records as JSON lines; returns (printed, undecodable)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        client_id="distillery-cli",
        **settings.kafka_python_kwargs(),
    )
    printed = bad = 0
    done: dict[Any, int] = {}  # partition -> next offset to read, for --group commits
    try:
        if group is None:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise BrokerError(f"topic {topic} does not exist", retriable=False)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            if from_beginning:
                consumer.seek_to_beginning(*assigned)
            else:
                consumer.seek_to_end(*assigned)
        else:
            consumer.subscribe([topic])
        last = time.monotonic()
        while max_records is None or printed < max_records:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if timeout_s is not None and time.monotonic() - last > timeout_s:
                    break
                continue
            last = time.monotonic()
            for records in batch.values():
                for message in records:
                    if max_records is not None and printed >= max_records:
                        break
                    done[TopicPartition(message.topic, message.partition)] = message.offset + 1
                    try:
                        record = decode_any(message.value)
                    except DistilleryError as exc:
                        bad += 1
                        err.write(
                            f"undecodable record at {message.topic}[{message.partition}]"
                            f"@{message.offset}: {exc}\n"
                        )
                        continue
                    out.write(record.model_dump_json() + "\n")
                    printed += 1
        out.flush()
        if group is not None and done:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in done.items()})
    finally:
        consumer.close()
    return printed, bad
