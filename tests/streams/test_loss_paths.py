"""Loss paths of issue 14 on the real broker, each with the worker that had it.

- Workers started before their topics exist wait for them and then get partitions (they
  used to subscribe at once, find no metadata and sit idle for ``metadata_max_age_ms``).
- A classify output the broker refuses as too large (a record over the topic's
  ``max.message.bytes``) becomes a dead letter carrying its input, and the worker goes on
  (it used to be counted as sent and the input committed: lost; then it ended the worker,
  which the next one repeated: the group stalled).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from distillery.settings import Settings, load_settings
from distillery.tasks import TICKETS
from schemas.records import Decision, TeacherRequest, Ticket
from schemas.serde import decode, encode
from streams.topics import catalogue, create_topics
from tests.streams.kit import REPO, read_all, stop, worker_env
from workers.runtime.status import idle_members
from workers.teacher import OracleTeacher, TeacherWorker
from workers.teacher.worker import group_id

pytestmark = [pytest.mark.kafka]

RUN_CLASSIFY = ("from distillery.settings import load_settings; from distillery.tasks import "
                "get_task; from streams.app import run_worker; s = load_settings(); "
                "run_worker(s, [get_task(s, 'tickets')])")


def _settings(bootstrap: str, tmp_path: Path) -> Settings:
    return load_settings(kafka_bootstrap=bootstrap, topic_prefix=f"lp{uuid.uuid4().hex[:8]}.",
                         registry_root=tmp_path / "registry", state_dir=tmp_path / "state")


def _requests(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"w{i}".encode(), encode(TeacherRequest(
        id=f"w{i}", task="tickets", text=f"my parcel {i} is late", reason="cold_start",
        metadata={"oracle_label": "shipping"}))) for i in range(n)]


def _send(settings: Settings, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    for key, value in items:
        producer.send(settings.topic(topic), key=key, value=value).get(timeout=30)
    producer.close()


def test_workers_started_before_their_topics_wait_and_get_partitions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = _settings(kafka_bootstrap, tmp_path)
    log = tmp_path / "classify.log"
    classify = subprocess.Popen([sys.executable, "-c", RUN_CLASSIFY], cwd=REPO,
                                env=worker_env(s), stdout=open(log, "ab"),  # noqa: SIM115
                                stderr=subprocess.STDOUT)

    async def scenario() -> tuple[list[Decision], list[str] | None]:
        worker = TeacherWorker(s, TICKETS, OracleTeacher())
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(3.0)  # both workers are up and looking for their topics
        await asyncio.to_thread(create_topics, s)
        await asyncio.to_thread(_send, s, "tickets.teacher", _requests(30))
        tickets = [(f"c{i}".encode(), encode(Ticket(id=f"c{i}", subject="Help",
                                                    body=f"order {i} missing")))
                   for i in range(30)]
        await asyncio.to_thread(_send, s, "tickets", tickets)
        deadline = time.monotonic() + 60
        decided: list[Decision] = []
        while time.monotonic() < deadline and len({d.id for d in decided}) < 30:
            await asyncio.sleep(1.0)
            messages = await asyncio.to_thread(read_all, s, "tickets.routed")
            decided = [decode(m.value, Decision) for m in messages]
        idle = await asyncio.to_thread(idle_members, s, group_id(s, TICKETS))
        worker.stop()
        await running
        return decided, idle

    try:
        decided, idle = asyncio.run(scenario())
        deadline = time.monotonic() + 60
        deferred: set[str] = set()
        while time.monotonic() < deadline and len(deferred) < 30:
            deferred = {decode(m.value, TeacherRequest).id
                        for m in read_all(s, "tickets.teacher")} - {f"w{i}" for i in range(30)}
            time.sleep(1.0)
    finally:
        code = stop(classify)
    assert {d.id for d in decided} == {f"w{i}" for i in range(30)}, "the teacher got partitions"
    assert idle == [], "status sees no idle member"
    assert deferred == {f"c{i}" for i in range(30)}, log.read_text()[-3000:]
    assert code == 0, log.read_text()[-3000:]


def test_an_output_the_broker_refuses_as_too_large_is_a_dead_letter_and_the_group_flows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = _settings(kafka_bootstrap, tmp_path)
    specs = catalogue(s)
    teacher_topic = s.topic("tickets.teacher")
    create_topics(s, [spec for spec in specs if spec.name != teacher_topic])
    admin = KafkaAdminClient(**s.kafka_python_kwargs())
    admin.create_topics([NewTopic(teacher_topic, s.topic_partitions, 1,
                                  topic_configs={"max.message.bytes": "3000"})])
    admin.close()
    good = [(f"g{i}".encode(), encode(Ticket(id=f"g{i}", subject="Help", body=f"order {i}")))
            for i in range(20)]
    big = (b"big", encode(Ticket(id="big", subject="Help", body="lost parcel " * 400)))
    after = [(f"a{i}".encode(), encode(Ticket(id=f"a{i}", subject="Help", body=f"parcel {i}")))
             for i in range(20)]
    _send(s, "tickets", [*good, big, *after])
    log = tmp_path / "classify.log"
    from tests.streams.kit import collect, start_classify

    worker = start_classify(s, log)
    try:
        want = {f"g{i}" for i in range(20)} | {f"a{i}" for i in range(20)}
        seen = collect(s, "tickets.routed", "tickets.teacher", want, want_dead=1)
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()[-3000:]
    requested = {r.id for r in seen["requests"]} | {d.id for d in seen["decisions"]}
    assert want <= requested, "every other event was decided or deferred"
    [letter] = seen["dead"]
    assert letter.error_kind == "output_too_large" and letter.source_topic == s.topic("tickets")
    produced = {m.key: (m.partition, m.offset) for m in read_all(s, "tickets")}
    assert (letter.partition, letter.offset) == produced[b"big"]
    assert letter.value_size == len(big[1]) and letter.value == big[1][:4096]


def test_a_poison_event_with_a_huge_id_is_dead_lettered_and_the_group_keeps_deciding(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue 29, item 2: a ~500 KB id fits the broker's limit as input, but its decision
    carries it twice; it used to end every worker the partition moved to (exit 70)."""
    s = _settings(kafka_bootstrap, tmp_path)
    create_topics(s, catalogue(s))
    poison = Ticket.model_construct(id="p" * 500_000, created_at=Ticket(id="x", body="b")
                                    .created_at, subject="Help", body="my parcel is late",
                                    channel=None, customer_tier=None, metadata={})
    good = [(f"g{i}".encode(), encode(Ticket(id=f"g{i}", subject="Help", body=f"order {i}")))
            for i in range(30)]
    _send(s, "tickets", [*good[:15], (b"poison", encode(poison)), *good[15:]])
    log = tmp_path / "classify.log"
    from tests.streams.kit import collect, start_classify

    worker = start_classify(s, log)
    try:
        want = {f"g{i}" for i in range(30)}
        seen = collect(s, "tickets.routed", "tickets.teacher", want, want_dead=1)
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()[-3000:]
    assert want <= {r.id for r in seen["requests"]} | {d.id for d in seen["decisions"]}
    [letter] = seen["dead"]
    assert letter.error_kind == "oversized" and "over the cap" in letter.message
    assert letter.key == b"poison" and letter.value_size > 500_000


def test_produce_counts_only_what_the_broker_acknowledged(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    import io
    import json

    from workers.records.transfer import produce_file

    s = _settings(kafka_bootstrap, tmp_path)
    admin = KafkaAdminClient(**s.kafka_python_kwargs())
    admin.create_topics([NewTopic(s.topic("small"), 1, 1,
                                  topic_configs={"max.message.bytes": "2000"})])
    admin.close()
    rows = [{"id": f"p{i}", "subject": "Help", "body": f"order {i}"} for i in range(5)]
    rows.insert(2, {"id": "huge", "subject": "Help", "body": "lost parcel " * 300})
    text = "\n".join(json.dumps(row) for row in rows) + "\n"
    summary = produce_file(s, s.topic("small"), io.StringIO(text), "jsonl", Ticket, {})
    assert summary.produced == 5, "the refused record is not counted as produced"
    [rejection] = summary.rejected
    assert rejection.line == 3 and "not delivered" in rejection.reason
    assert {m.key for m in read_all(s, "small")} == {f"p{i}".encode() for i in range(5)}
