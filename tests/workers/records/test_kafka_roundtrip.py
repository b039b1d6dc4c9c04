"""Records round-trip through the real broker; the CLI reports bad lines; topics are idempotent."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillery.settings import Settings
from schemas.records import RECORD_TYPES
from streams.topics import catalogue, create_topics, describe_topics, wait_for_topics_sync
from tests.schemas.test_schemas import samples
from workers.records.transfer import consume_topic, produce_file

pytestmark = pytest.mark.kafka


def _jsonl(records: list[dict]) -> io.StringIO:
    return io.StringIO("".join(json.dumps(rec) + "\n" for rec in records))


@pytest.mark.parametrize("record", samples(), ids=lambda rec: rec.avro_name)
def test_every_schema_round_trips_through_kafka(kafka_settings: Settings, record) -> None:
    topic = kafka_settings.topic(f"rt.{record.avro_name}")
    create_topics(kafka_settings, [])  # the catalogue is there; this topic is auto-created
    payload = json.loads(record.model_dump_json())
    summary = produce_file(
        kafka_settings, topic, _jsonl([payload] * 3), "jsonl", type(record), {}
    )
    assert summary.produced == 3 and not summary.rejected
    out, err = io.StringIO(), io.StringIO()
    printed, bad = consume_topic(
        kafka_settings, topic, from_beginning=True, max_records=3, timeout_s=15,
        group=None, out=out, err=err,
    )
    assert (printed, bad) == (3, 0)
    for line in out.getvalue().splitlines():
        assert RECORD_TYPES[record.avro_name].model_validate_json(line) == record


def test_bad_lines_are_rejected_with_line_numbers(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic("tickets")
    lines = [
        {"id": "ok-1", "subject": "Refund", "body": "charged twice"},
        {"id": "", "body": "empty id"},
        {"id": "ok-3", "subject": "", "body": "  "},
        {"body": "an id is generated"},
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines[:3]) + "{broken json\n"
    text += json.dumps(lines[3]) + "\n"
    summary = produce_file(kafka_settings, topic, io.StringIO(text), "jsonl",
                           RECORD_TYPES["ticket"], {})
    assert summary.produced == 2
    assert [(x.line, x.reason.split(":")[0]) for x in summary.rejected] == [
        (2, "id"), (3, "record"), (4, "not valid JSON")
    ]


def test_cli_produce_and_consume(kafka_settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text(
        "id,subject,body,oracle_label\n"
        "c1,Login,cannot log in,account_access\n"
        "c2,,,billing\n"
        "c3,Invoice,wrong amount,billing\n",
        encoding="utf-8",
    )
    env = {"DISTILLERY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
           "DISTILLERY_TOPIC_PREFIX": kafka_settings.topic_prefix, "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "workers.cli"]
    topic = kafka_settings.topic("tickets")
    done = subprocess.run(cli + ["produce", topic, str(data)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "produced 2, rejected 1" in done.stdout
    assert "line 3: record: text is empty" in done.stderr
    done = subprocess.run(cli + ["consume", topic, "--from-beginning", "--max", "2",
                                 "--timeout", "20"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(g["id"] for g in got) == ["c1", "c3"]
    assert {g["metadata"]["oracle_label"] for g in got} == {"account_access", "billing"}
    bad = subprocess.run(cli + ["produce", topic, str(tmp_path / "missing.jsonl")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "not found" in bad.stderr


def test_consume_reports_undecodable_records_and_goes_on(kafka_settings: Settings) -> None:
    from kafka import KafkaProducer

    topic = kafka_settings.topic("tickets")
    producer = KafkaProducer(**kafka_settings.kafka_python_kwargs())
    producer.send(topic, key=b"k", value=b"not avro at all", partition=0)
    producer.flush()
    producer.close()
    produce_file(kafka_settings, topic, _jsonl([{"id": "fine", "body": "ok"}]), "jsonl",
                 RECORD_TYPES["ticket"], {})
    out, err = io.StringIO(), io.StringIO()
    printed, bad = consume_topic(kafka_settings, topic, from_beginning=True, max_records=1,
                                 timeout_s=5, group=None, out=out, err=err)
    assert (printed, bad) == (1, 1)
    assert "undecodable record at" in err.getvalue() and "@0" in err.getvalue()


def test_topics_are_created_idempotently_with_the_catalogue_config(
    kafka_settings: Settings,
) -> None:
    assert create_topics(kafka_settings) == []  # the fixture created them all already
    names = [spec.name for spec in catalogue(kafka_settings)]
    wait_for_topics_sync(kafka_settings, names, timeout_s=30)
    models = kafka_settings.topic("models")
    deadline = time.monotonic() + 15  # a new topic's config reaches describe a moment later
    while True:
        described = {d["topic"]: d for d in describe_topics(kafka_settings, names)}
        if described[models]["config"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert described[kafka_settings.topic("models")]["config"]["cleanup.policy"] == "compact"
    assert described[kafka_settings.topic("models")]["partitions"] == 1
    per_task = [d["partitions"] for name, d in described.items()
                if "models" not in name and not name.endswith(".trainer.lock")]
    assert set(per_task) == {kafka_settings.topic_partitions}
