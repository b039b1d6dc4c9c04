"""The classify worker on a real broker with no student yet: every event is accounted for."""

from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import fastavro
import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from schemas.records import Feedback, Ticket
from schemas.serde import SINGLE_OBJECT_MAGIC, encode, schema_for
from tests.streams.kit import collect, produce_paced, start_classify, stop, wait_until_consuming

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _blank_ticket_bytes() -> bytes:
    """A well-framed ticket whose text is blank: decodes, then fails validation."""
    schema = schema_for("ticket")
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    fastavro.schemaless_writer(buffer, schema.parsed, {
        "id": "blank-1", "created_at": 0, "subject": " ", "body": "\n", "channel": None,
        "customer_tier": None, "metadata": {}})
    return buffer.getvalue()


MALFORMED: list[tuple[bytes | None, bytes | None, str]] = [
    (b"junk-1", b"\x00\x01 definitely not avro", "undecodable"),
    (b"empty-1", b"", "empty"),
    (b"tomb-1", None, "empty"),
    (b"fb-1", encode(Feedback(id="fb-1", task="tickets", label="billing")), "undecodable"),
    (b"blank-1", _blank_ticket_bytes(), "invalid"),
    (b"big-1", encode(Ticket(id="big-1", subject="s", body="x" * 900)), "oversized"),
]


def _produce(settings: Settings, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    for key, value in items:
        producer.send(settings.topic("tickets"), key=key, value=value)
    producer.flush()
    producer.close()


def _tickets(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [
        (f"{prefix}{i}".encode(), encode(Ticket(id=f"{prefix}{i}", subject="Help",
                                                body=f"my order {i} has not arrived")))
        for i in range(n)
    ]


def test_cold_start_defers_everything_and_dead_letters_bad_input(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    good = _tickets(200, "cs-")
    _produce(kafka_settings, [*good[:100], *[(k, v) for k, v, _ in MALFORMED], *good[100:]])
    worker = start_classify(kafka_settings, tmp_path / "worker.log",
                            DISTILLERY_MAX_TEXT_CHARS="500")
    try:
        out = collect(kafka_settings, "tickets.routed", "tickets.teacher",
                      {k.decode() for k, _ in good}, len(MALFORMED), timeout_s=120)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert out["decisions"] == []
    assert set(out["request_counts"]) == {k.decode() for k, _ in good}
    assert all(r.reason == "cold_start" for r in out["requests"])
    dead = {d.key: d for d in out["dead"]}
    assert len(out["dead"]) == len(MALFORMED)
    for key, value, kind in MALFORMED:
        letter = dead[key]
        assert letter.error_kind == kind, (key, letter.message)
        assert letter.value == (value or b"")
        assert letter.source_topic == kafka_settings.topic("tickets")
        assert letter.partition >= 0 and letter.offset >= 0 and letter.message


def test_sigkill_mid_stream_loses_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    good = _tickets(4000, "kill-")
    log = tmp_path / "worker.log"
    worker = start_classify(kafka_settings, log, DISTILLERY_BATCH_SIZE="32")
    # produced only once the worker reads (10 s at 400/s): it is killed while the stream
    # flows, however fast this machine started it or works through a backlog
    wait_until_consuming(kafka_settings, workers=(worker,))
    producer = threading.Thread(target=produce_paced, args=(kafka_settings, good, 400.0))
    producer.start()
    deadline = time.monotonic() + 90
    partial: dict = {"requests": []}
    while time.monotonic() < deadline and len(partial["requests"]) < 300:
        time.sleep(0.2)
        partial = collect(kafka_settings, "tickets.routed", "tickets.teacher", set(), 0, 1)
    stop(worker, signal.SIGKILL)
    assert 0 < len(partial["requests"]) < len(good), "kill the worker mid-stream, not after"
    worker = start_classify(kafka_settings, log)
    try:
        producer.join()
        out = collect(kafka_settings, "tickets.routed", "tickets.teacher",
                      {k.decode() for k, _ in good}, 0, timeout_s=180)
    finally:
        stop(worker)
    counts = out["request_counts"]
    assert set(counts) == {k.decode() for k, _ in good}, "no id lost"
    duplicates = {i for i, c in counts.items() if c > 1}
    by_id: dict[str, list] = {}
    for request in out["requests"]:
        by_id.setdefault(request.id, []).append(request)
    for item_id in duplicates:  # re-processing gives the same routing, not a new decision
        first, *rest = by_id[item_id]
        for again in rest:
            assert (again.reason, again.student_label, again.text) == (
                first.reason, first.student_label, first.text)
    print(f"duplicates after SIGKILL: {len(duplicates)} of {len(good)}")
