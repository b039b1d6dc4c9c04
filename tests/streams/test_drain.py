"""``run_inline``: a delivery that does not wait runs in place; one that waits is finished
later with its result, its exception or its cancellation intact."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from streams.drain import DrainApp, DrainConsumer, run_inline


async def _no_wait(log: list[str]) -> str:
    log.append("ran")
    return "done"


async def _waits(gate: asyncio.Event, log: list[str]) -> str:
    log.append("started")
    await gate.wait()
    log.append("resumed")
    return "late"


def test_a_coroutine_that_never_waits_finishes_in_place_without_a_task() -> None:
    async def main() -> None:
        log: list[str] = []
        tasks_before = len(asyncio.all_tasks())
        assert run_inline(_no_wait(log)) is None
        assert log == ["ran"]
        assert len(asyncio.all_tasks()) == tasks_before

    asyncio.run(main())


def test_a_coroutine_that_waits_is_finished_by_the_rest() -> None:
    async def main() -> None:
        log: list[str] = []
        gate = asyncio.Event()
        rest = run_inline(_waits(gate, log))
        assert rest is not None and log == ["started"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        gate.set()
        assert await task == "late"
        assert log == ["started", "resumed"]

    asyncio.run(main())


def test_errors_come_out_where_they_happen() -> None:
    async def fails_at_once() -> None:
        raise ValueError("bad at once")

    async def fails_later(gate: asyncio.Event) -> None:
        await gate.wait()
        raise KeyError("bad later")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad at once"):
            run_inline(fails_at_once())
        gate = asyncio.Event()
        rest = run_inline(fails_later(gate))
        assert rest is not None
        gate.set()
        with pytest.raises(KeyError, match="bad later"):
            await rest

    asyncio.run(main())


def test_cancelling_the_rest_cancels_the_delivery() -> None:
    async def main() -> None:
        cleaned: list[str] = []

        async def blocked(gate: asyncio.Event) -> None:
            try:
                await gate.wait()
            finally:
                cleaned.append("finally")

        rest = run_inline(blocked(asyncio.Event()))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["finally"]

    asyncio.run(main())


def test_the_classify_app_uses_the_drain_consumer() -> None:
    app = DrainApp("drain-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    assert app.transport.Consumer is DrainConsumer


@pytest.mark.kafka
def test_a_worker_fed_a_fetch_at_a_time_commits_every_message(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The classify agent gets one ``MessageBatch`` per fetch; its ack must ack every message
    in it, so that once the worker has answered everything its group's committed offsets
    reach the end of every input partition (a batch acked as one offset would not)."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

    from distillery.settings import load_settings
    from distillery.tasks import TICKETS
    from schemas.records import Ticket
    from schemas.serde import encode
    from streams.topics import create_topics
    from tests.streams.kit import collect, start_classify, stop

    s = load_settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"dr{uuid.uuid4().hex[:8]}.",
                      registry_root=tmp_path / "registry", state_dir=tmp_path / "state")
    create_topics(s)
    producer = KafkaProducer(acks="all", linger_ms=5, **s.kafka_python_kwargs())
    ids = [f"t{i}" for i in range(900)]
    for i in ids:
        producer.send(s.topic(TICKETS.input_topic), key=i.encode(),
                      value=encode(Ticket(id=i, subject="Help", body=f"parcel {i} is late")))
    producer.flush()
    producer.close()
    worker = start_classify(s, tmp_path / "classify.log")
    group = f"{s.topic_prefix}distillery-classify"
    try:
        got = collect(s, TICKETS.results_topic, TICKETS.teacher_topic, set(ids), 0)
        assert set(ids) <= {r.id for r in got["requests"]} | {d.id for d in got["decisions"]}
        consumer = KafkaConsumer(**s.kafka_python_kwargs())
        parts = [TopicPartition(s.topic(TICKETS.input_topic), p) for p in range(s.topic_partitions)]
        ends = {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
        consumer.close()
        admin = KafkaAdminClient(**s.kafka_python_kwargs())
        done: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while done != ends and time.monotonic() < deadline:  # commits run every second
            time.sleep(0.5)
            offsets = admin.list_group_offsets(group).get(group) or {}
            done = {tp.partition: getattr(meta, "offset", meta) for tp, meta in offsets.items()
                    if tp.topic == s.topic(TICKETS.input_topic)}
            done = {p: done.get(p, 0) for p in ends}
        admin.close()
        assert sum(ends.values()) == len(ids)
        assert done == ends, (done, ends)
    finally:
        code = stop(worker)
    assert code == 0, (tmp_path / "classify.log").read_text()[-3000:]
