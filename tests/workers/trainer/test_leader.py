"""One trainer per task, against the real broker: one leads, the other stands by with a full
store and takes over when the leader leaves; a paused leader is refused by the broker."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from schemas.records import TeacherVerdict
from schemas.serde import encode
from workers.trainer.leader import LeadershipLost, TrainerLock, latest_announcements
from workers.trainer.store import TrainingStore
from workers.trainer.worker import TrainerWorker

pytestmark = pytest.mark.kafka

LABELS = ["billing", "shipping", "refunds"]
TASK = TaskConfig(name="tickets", schema="ticket", labels=[LabelSpec(name=n) for n in LABELS])


def _send_verdicts(s: Settings, start: int, n: int) -> None:
    producer = KafkaProducer(acks="all", **s.kafka_python_kwargs())
    for i in range(start, start + n):
        v = TeacherVerdict(id=f"v{i}", task="tickets", text=f"text {i}", label=LABELS[i % 3],
                           teacher_id="test", reason="low_confidence")
        producer.send(s.topic("tickets.verdicts"), key=v.id.encode(), value=encode(v))
    producer.flush()
    producer.close()


def _trainer(s: Settings, name: str, tmp_path: Path, log: list[tuple[str, int, bool]]
             ) -> TrainerWorker:
    host = s.model_copy(update={"state_dir": tmp_path / name, "registry_root":
                                tmp_path / name / "registry", "refresh_first_verdicts": 50,
                                "refresh_every_verdicts": 50, "refresh_every_minutes": 1e6})

    def refresh(store: TrainingStore, confirm: Any) -> dict[str, Any]:
        log.append((name, store.counts()["verdicts"], confirm()))
        return {}

    return TrainerWorker(host, TASK, refresh)


async def _committed(s: Settings, group: str, topic: str) -> int:
    """The sum of the offsets ``group`` committed on ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(group_id=s.topic_prefix + group, **s.aiokafka_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(s.topic(topic), p) for p in range(s.topic_partitions)]
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


async def _until(predicate: Any, timeout_s: float) -> float:
    """Seconds until ``predicate()`` holds; fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def _leads(worker: TrainerWorker) -> bool:
    return worker.metrics.leader._value.get() == 1  # the gauge the worker exposes


def test_two_trainers_one_leads_and_the_standby_takes_over_warm(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    s = kafka_settings
    refreshes: list[tuple[str, int, bool]] = []
    a, b = _trainer(s, "a", tmp_path, refreshes), _trainer(s, "b", tmp_path, refreshes)

    async def scenario() -> None:
        run_a = asyncio.create_task(a.run())
        await _until(lambda: _leads(a), 30)
        run_b = asyncio.create_task(b.run())
        await _until(lambda: b.lock._reported is not None, 30)  # b's first assignment
        await asyncio.sleep(1.0)
        assert _leads(a) and not _leads(b), "the first trainer keeps the lead"
        await asyncio.to_thread(_send_verdicts, s, 0, 120)
        await _until(lambda: a.store.counts()["verdicts"] == 120
                     and b.store.counts()["verdicts"] == 120, 60)
        await _until(lambda: bool(refreshes), 30)  # a refreshed (after the first 50 or more)
        await asyncio.sleep(1.0)
        assert {r[0] for r in refreshes} == {"a"}, refreshes
        assert all(ok for _, _, ok in refreshes), "the broker confirmed the leader's lock"
        assert b.new_verdicts == 120, "the standby read every verdict and trained on none"
        committed = await _committed(s, "distillery-trainer-tickets", "tickets.verdicts")
        assert committed == 120, "the leader's positions, for `status`'s lag"

        a.stop()
        await run_a
        took = await _until(lambda: _leads(b), 10 + 5)  # a left the group: no session wait
        print(f"the standby led {took:.2f}s after the leader stopped")
        await _until(lambda: any(r[0] == "b" for r in refreshes), 30)
        assert refreshes[-1] == ("b", 120, True), "b refreshed at once on its warm store"
        await asyncio.to_thread(_send_verdicts, s, 120, 60)
        await _until(lambda: refreshes[-1][1] >= 170, 30)  # 50 more (the batches may split)
        assert refreshes[-1][0] == "b" and refreshes[-1][2]
        b.stop()
        await run_b

    asyncio.run(scenario())


def test_a_paused_leader_is_refused_by_the_broker(kafka_settings: Settings) -> None:
    """A leader whose process stalls past the session timeout still believes it leads when
    it wakes; the broker's answer to ``confirm`` does not."""
    s = kafka_settings
    session_ms = 6000  # the broker's minimum
    a_leads, pause, done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    async def leader_a() -> None:
        lock = TrainerLock(s, "tickets", session_timeout_ms=session_ms,
                           heartbeat_interval_ms=1000)
        await lock.start()
        try:
            assert await lock.wait_leading(30)
            seen["before"] = await lock.confirm()
            a_leads.set()
            await asyncio.to_thread(pause.wait, 60)
            time.sleep(session_ms / 1000 + 4)  # the whole loop stalls: no heartbeats
            seen["flag_after_pause"] = lock.leading  # nothing has told it yet
            seen["after"] = await lock.confirm(timeout_s=3)
        finally:
            await lock.stop()
            done.set()

    thread = threading.Thread(target=lambda: asyncio.run(leader_a()), daemon=True)
    thread.start()

    async def standby_b() -> None:
        lock = TrainerLock(s, "tickets", session_timeout_ms=session_ms,
                           heartbeat_interval_ms=1000)
        assert await asyncio.to_thread(a_leads.wait, 60)
        await lock.start()
        try:
            assert not await lock.wait_leading(3), "a standby does not take a held lock"
            pause.set()
            seen["b_took_over_s"] = await _until(lambda: lock.leading, session_ms / 1000 + 10)
            seen["b_confirms"] = await lock.confirm()
            assert await asyncio.to_thread(done.wait, 60)
        finally:
            await lock.stop()

    asyncio.run(standby_b())
    thread.join(30)
    print(seen)
    assert seen["before"] is True and seen["b_confirms"] is True
    assert seen["flag_after_pause"] is True, "the paused leader's own flag is stale"
    assert seen["after"] is False, "the broker refused the deposed leader"


def test_a_version_trained_after_losing_the_lock_is_not_announced(
    kafka_settings: Settings, clinc_dir: Path, tmp_path: Path
) -> None:
    import json

    from models.registry import Registry
    from workers.trainer.worker import store_refresher

    intents = ["balance", "bill_due", "card_declined", "transfer"]
    task = TaskConfig(name="tickets", schema="ticket",
                      labels=[LabelSpec(name=n) for n in intents])
    s = kafka_settings.model_copy(update={"student_buckets": 1 << 16})
    rows = [r for r in json.loads((clinc_dir / "data_full.json").read_text())["train"]
            if r[1] in intents]
    store = TrainingStore(tmp_path / "s.sqlite")
    for i, (text, label) in enumerate(rows):
        store.add_verdict(TeacherVerdict(id=f"c{i}", task="tickets", text=text, label=label,
                                         teacher_id="t", reason="low_confidence"))
    store.commit()
    refresh = store_refresher(s, task, [])
    first = refresh(store, lambda: True)
    assert first["promoted"], first["reason"]
    with pytest.raises(LeadershipLost):
        refresh(store, lambda: False)  # same data: it passes the gate, then is refused
    registry = Registry.from_settings(s)
    assert registry.state("tickets")["serving"] == first["version"], "local promotion undone"
    assert len(registry.versions("tickets")) == 2
    latest = asyncio.run(latest_announcements(s))
    assert latest["tickets"].version == first["version"]
    store.close()
