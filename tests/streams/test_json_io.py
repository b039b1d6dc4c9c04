"""JSON events in, readable results out.

Unit level: a task's ``input_format`` decides what the classify worker's decoder accepts and
its ``output_format`` how decisions are written. On the real broker, with a real classify
worker and a real (oracle) teacher worker: JSON and Avro events for the same task, produced
with plain kafka-python, each get a decision, and bad JSON lands in the dead-letter topic
with its reason; a task with JSON output is read with plain kafka-python and ``json``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from distillery.settings import Settings
from distillery.tasks import TICKETS, TaskConfig
from schemas.records import DeadLetter, Decision, Ticket
from schemas.serde import decode, encode
from streams.decode import Item, RawEvent, decode_event, encode_output
from tests.streams.kit import read_all, start_classify, stop
from tests.streams.teacher_proc import start_teacher


def _task(**formats: Any) -> TaskConfig:
    return TICKETS.model_copy(update=formats)


def _raw(value: bytes | None, offset: int = 0) -> RawEvent:
    return RawEvent(topic="p.tickets", partition=0, offset=offset, key=b"k", value=value)


def _json(**fields: Any) -> bytes:
    return json.dumps(fields).encode("utf-8")


AVRO_TICKET = encode(Ticket(id="a1", subject="refund", body="charged twice"))
JSON_TICKET = _json(id="j1", subject="refund", body="I was charged twice")


def test_auto_takes_avro_and_json() -> None:
    for value, item_id in ((AVRO_TICKET, "a1"), (JSON_TICKET, "j1")):
        item = decode_event(_task(), _raw(value), 500)
        assert isinstance(item, Item) and item.record.id == item_id
        assert "charged twice" in item.text


@pytest.mark.parametrize("fmt, accepted, refused, reason", [
    ("avro", AVRO_TICKET, JSON_TICKET, "not Avro"),
    ("json", JSON_TICKET, AVRO_TICKET, "not JSON: the bytes start with an Avro header"),
])
def test_a_single_format_dead_letters_the_other(fmt: str, accepted: bytes, refused: bytes,
                                                reason: str) -> None:
    task = _task(input_format=fmt)
    assert isinstance(decode_event(task, _raw(accepted), 500), Item)
    letter = decode_event(task, _raw(refused), 500)
    assert isinstance(letter, DeadLetter)
    assert letter.error_kind == "undecodable" and reason in letter.message
    assert letter.value == refused


@pytest.mark.parametrize("value, kind, reason", [
    (b'{"id": "b1", "subject": "refund"', "undecodable", "neither Avro nor JSON"),
    (b'["not", "an", "object"]', "undecodable", "JSON value is not an object"),
    (_json(id="b2", subject="refund"), "invalid", "body: Field required"),
    (_json(id="b3", subject=" ", body=""), "invalid", "text is empty"),
    (_json(id="b4", body="b", queue="billing"), "invalid", "queue: Extra inputs"),
    (_json(id="b5", subject="s", body="x" * 600), "oversized", "over the cap of 500"),
    (b"", "empty", "no value"),
])
def test_bad_json_is_dead_lettered_with_the_avro_reasons(value: bytes, kind: str,
                                                         reason: str) -> None:
    letter = decode_event(_task(), _raw(value, offset=7), 500)
    assert isinstance(letter, DeadLetter)
    assert (letter.error_kind, letter.offset, letter.source_topic) == (kind, 7, "p.tickets")
    assert reason in letter.message


def test_output_format_decides_how_decisions_are_written() -> None:
    decision = Decision(id="j1", task="tickets", label="refunds", confidence=1.0,
                        decided_by="teacher", reason="cold_start")
    avro = encode_output(_task(), decision)
    plain = encode_output(_task(output_format="json"), decision)
    assert avro[:2] == b"\xc3\x01"
    assert json.loads(plain)["label"] == "refunds"
    assert decode(avro, Decision) == decode(plain, Decision) == decision


# --- on the real broker ------------------------------------------------------------------

def _produce_plain(settings: Settings, events: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for key, value in events:
        producer.send(settings.topic("tickets"), key=key, value=value)
    producer.flush()
    producer.close()


def _wait(check: Any, what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1.0)


def _oracle_ticket(item_id: str, label: str) -> dict[str, Any]:
    return {"id": item_id, "subject": "help", "body": f"ticket {item_id} about {label}",
            "metadata": {"oracle_label": label}}


@pytest.mark.kafka
@pytest.mark.slow
def test_json_and_avro_events_each_get_a_decision(kafka_settings: Settings,
                                                  tmp_path: Path) -> None:
    labels = ["refunds", "shipping", "billing"]
    good: dict[str, str] = {}
    events: list[tuple[bytes, bytes]] = []
    for i, label in enumerate(labels):
        json_id, avro_id = f"json-{i}", f"avro-{i}"
        good[json_id] = good[avro_id] = label
        events.append((json_id.encode(), json.dumps(_oracle_ticket(json_id, label)).encode()))
        events.append((avro_id.encode(), encode(Ticket(**_oracle_ticket(avro_id, label)))))
    bad = {b"bad-json": (b'{"id": "bad-json", "subject": "refund', "undecodable",
                         "neither Avro nor JSON"),
           b"bad-body": (_json(id="bad-body", subject="refund"), "invalid",
                         "body: Field required")}
    events += [(key, value) for key, (value, _, _) in bad.items()]
    _produce_plain(kafka_settings, events)

    classify = start_classify(kafka_settings, tmp_path / "classify.log")
    teacher = start_teacher(kafka_settings, tmp_path / "teacher.log")
    try:
        def decided() -> dict[str, Decision] | None:
            decisions = {d.id: d for d in (decode(m.value, Decision) for m in
                                           read_all(kafka_settings, "tickets.routed"))}
            return decisions if set(good) <= set(decisions) else None

        def dead() -> dict[bytes, DeadLetter] | None:
            letters = {d.key: d for d in (decode(m.value, DeadLetter) for m in
                                          read_all(kafka_settings, "deadletter")) if d.key}
            return letters if set(bad) <= set(letters) else None

        decisions = _wait(decided, "a decision for every JSON and Avro event")
        letters = _wait(dead, "the bad JSON events in the dead-letter topic")
    finally:
        assert stop(teacher) == 0, (tmp_path / "teacher.log").read_text()[-3000:]
        assert stop(classify) == 0, (tmp_path / "classify.log").read_text()[-3000:]
    for item_id, label in good.items():
        assert decisions[item_id].label == label, decisions[item_id]
        assert decisions[item_id].decided_by == "teacher"
    for key, (value, kind, reason) in bad.items():
        letter = letters[key]
        assert letter.error_kind == kind and reason in letter.message, letter
        assert letter.value == value
        assert letter.source_topic == kafka_settings.topic("tickets")


@pytest.mark.kafka
@pytest.mark.slow
def test_json_results_are_read_with_plain_kafka_python(kafka_settings: Settings,
                                                       tmp_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition

    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text('[tasks.tickets]\ninput_format = "json"\noutput_format = "json"\n'
                          'tiers = ["ngram"]\n', encoding="utf-8")  # no refine worker here
    ids = {f"plain-{uuid.uuid4().hex[:6]}-{i}": label
           for i, label in enumerate(["refunds", "returns", "bug_report", "shipping"])}
    events = [(k.encode(), json.dumps(_oracle_ticket(k, v)).encode()) for k, v in ids.items()]
    avro = encode(Ticket(**_oracle_ticket("avro-refused", "refunds")))
    _produce_plain(kafka_settings, [*events, (b"avro-refused", avro)])

    classify = start_classify(kafka_settings, tmp_path / "classify.log",
                              DISTILLERY_TASKS_FILE=str(tasks_file))
    teacher = start_teacher(kafka_settings, tmp_path / "teacher.log",
                            DISTILLERY_TASKS_FILE=str(tasks_file))
    # What a team's own service would do: no distillery code, just the topic and json.
    results = f"{kafka_settings.topic_prefix}tickets.routed"
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap,
                             auto_offset_reset="earliest", group_id=None)
    seen: dict[str, dict[str, Any]] = {}
    try:
        partitions = [TopicPartition(results, p)
                      for p in sorted(consumer.partitions_for_topic(results) or [])]
        assert partitions, f"{results} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 120
        while not set(ids) <= set(seen) and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    value = json.loads(message.value.decode("utf-8"))
                    assert message.key.decode() == value["id"]
                    seen[value["id"]] = value

        def refused() -> list[DeadLetter] | None:
            letters = [decode(m.value, DeadLetter) for m in
                       read_all(kafka_settings, "deadletter")]
            found = [d for d in letters if d.key == b"avro-refused"]
            return found or None

        letters = _wait(refused, "the Avro event in the dead-letter topic")
    finally:
        consumer.close()
        assert stop(teacher) == 0, (tmp_path / "teacher.log").read_text()[-3000:]
        assert stop(classify) == 0, (tmp_path / "classify.log").read_text()[-3000:]
    assert set(seen) == set(ids)
    for item_id, label in ids.items():
        assert seen[item_id]["label"] == label and seen[item_id]["task"] == "tickets"
        assert seen[item_id]["decided_by"] == "teacher"
    # the task takes only JSON: the Avro event is dead-lettered, saying why
    assert len(letters) == 1 and letters[0].error_kind == "undecodable"
    assert "not JSON" in letters[0].message


def test_the_readers_take_json_decisions_and_feedback(tmp_path: Path) -> None:
    """The report and the trainer decode with ``auto``: JSON needs no change in them."""
    from types import SimpleNamespace

    from distillery.settings import load_settings
    from schemas.records import Feedback
    from workers.report import figures
    from workers.trainer.consume import apply_message
    from workers.trainer.store import TrainingStore

    settings = load_settings(topic_prefix="p.")
    decisions = [Decision(id=f"d{i}", task="tickets", label="refunds", confidence=1.0,
                          decided_by="teacher", reason="cold_start") for i in range(2)]
    messages = [SimpleNamespace(topic="p.tickets.routed", value=encode(decisions[0])),
                SimpleNamespace(topic="p.tickets.routed", value=encode(decisions[1], "json"))]
    data = figures.sort_messages(settings, [TICKETS], messages)
    assert data["tickets"].decisions == decisions and data["tickets"].undecodable == 0

    store = TrainingStore(tmp_path / "store.sqlite")
    try:
        feedback = Feedback(id="f1", task="tickets", label="refunds")
        message = SimpleNamespace(topic="p.tickets.feedback", partition=0, offset=0,
                                  value=encode(feedback, "json"))
        apply_message(store, TICKETS, "feedback", message)
        assert store.counts()["feedback"] == 1
    finally:
        store.close()
