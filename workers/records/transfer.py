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
from schemas.registry import frame
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
        return KafkaProducer(linger_ms=5, client_id="distillery-cli",
                             **settings.kafka_python_producer_kwargs())
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
    """Validate, encode (Avro or JSON) and send every line of ``stream``; keyed by record id.

    A record counts as produced only when the broker acknowledged it (each send's future is
    checked after a flush, every ``CHECK_EVERY`` records and at the end); one the producer
    or the broker refuses (too large, not authorised) is a rejection with its line number
    and reason, and the rest of the file goes on.
    """
    from kafka.errors import KafkaError

    summary = ProduceSummary()
    sender = _Sender(settings, topic)
    try:
        for number, item in read_records(stream, fmt, cls, mapping, settings.max_text_chars):
            on_line()
            if isinstance(item, Rejection):
                summary.rejected.append(item)
                continue
            key = getattr(item, "id", None) or getattr(item, "task", None)
            try:
                sender.send(number, str(key).encode() if key else None,
                            frame(topic, encode(item, wire)))
            except KafkaError as exc:  # e.g. over the producer's max_request_size
                summary.rejected.append(Rejection(number, f"not sent: {exc}"))
            if len(sender.sent) >= CHECK_EVERY:
                sender.settle(summary)
        sender.settle(summary)
    finally:
        _close(sender.producer)
    summary.rejected.sort(key=lambda r: r.line)
    return summary


CHECK_EVERY = 5000


class _Sender:
    """A producer and the sends not yet checked: (line, key, value, future)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.producer = make_producer(settings)
        self.sent: list[tuple[int, bytes | None, bytes, Any]] = []

    def send(self, number: int, key: bytes | None, value: bytes) -> None:
        self.sent.append((number, key, value, self.producer.send(self.topic, key=key,
                                                                 value=value)))

    def settle(self, summary: ProduceSummary) -> None:
        """Flush, count what the broker acknowledged; a failed record is sent again alone
        on a fresh producer (kafka-python aborts every batch in hand after a fatal error,
        so a neighbour of a refused record may have failed with it), and only if it fails
        alone is it a rejection."""
        from kafka.errors import KafkaError

        try:
            self.producer.flush()
        except KafkaError:
            pass  # the futures say which records failed
        failed = [(n, k, v) for n, k, v, f in self.sent if not (f.is_done and f.succeeded())]
        summary.produced += len(self.sent) - len(failed)
        self.sent.clear()
        if not failed:
            return
        _close(self.producer)
        self.producer = make_producer(self.settings)
        for number, key, value in failed:
            future = self.producer.send(self.topic, key=key, value=value)
            try:
                self.producer.flush()
            except KafkaError:
                pass
            if future.is_done and future.succeeded():
                summary.produced += 1
                continue
            summary.rejected.append(Rejection(number, f"not delivered: {future.exception}"))
            _close(self.producer)
            self.producer = make_producer(self.settings)


def _close(producer: Any) -> None:
    """Close a producer that may hold batches a fatal error aborted (its flush raises)."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=5)
    except KafkaError:
        pass


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
