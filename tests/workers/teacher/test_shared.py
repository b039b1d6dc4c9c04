"""Teacher workers ×N on one group: one budget and one verdict memory, through the ledger topic.

Two workers with their own state folders (two hosts, as far as the teacher is concerned)
share a cost budget that runs out mid-stream; a worker with an empty state folder that gets
already-answered requests again replays them without calling the teacher.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from distillery.settings import Settings
from distillery.tasks import TICKETS, TaskConfig
from schemas.records import TeacherRequest
from streams.topics import describe_topics, teacher_ledger_topic
from tests.workers.teacher.test_worker import Collector, fast, produce, req
from workers.teacher import OracleTeacher, TeacherAnswer, TeacherWorker
from workers.teacher.worker import group_id

pytestmark = pytest.mark.kafka

COST = 0.05  # per call


class CountingTeacher(OracleTeacher):
    """The oracle at a known cost per call, slow next to the ledger's lag, counting its calls."""

    def __init__(self) -> None:
        super().__init__(cost_per_call=COST, latency_s=0.2)
        self.calls: list[str] = []

    async def decide(self, request: TeacherRequest, task: TaskConfig) -> TeacherAnswer:
        self.calls.append(request.id)
        return await super().decide(request, task)


def host(settings: Settings, tmp_path: Path, name: str, **update: Any) -> Settings:
    """The settings of a worker on its own host: same broker and prefix, its own state folder."""
    return fast(settings, state_dir=tmp_path / name, **update)


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_two_workers_share_one_cost_budget(kafka_settings: Settings, tmp_path: Path) -> None:
    limit, concurrency = 1.0, 2
    hosts = [host(kafka_settings, tmp_path, name, teacher_cost_per_hour=limit,
                  teacher_calls_per_minute=1e6, teacher_concurrency=concurrency)
             for name in ("a", "b")]
    teachers = [CountingTeacher(), CountingTeacher()]
    workers = [TeacherWorker(s, TICKETS, t) for s, t in zip(hosts, teachers, strict=True)]
    items = [req(f"sh{i}", TICKETS.label_names[i % 12]) for i in range(60)]
    assignments: list[list[int]] = []

    async def scenario() -> int:
        running = [asyncio.create_task(w.run()) for w in workers]
        try:
            async with Collector(kafka_settings, TICKETS) as collector:
                # both in the group, the partitions split between them, before any request
                await _until(lambda: all(w.assigned for w in workers)
                             and sum(len(w.assigned) for w in workers)
                             == kafka_settings.topic_partitions, 90, "both workers assigned")
                await produce(kafka_settings, TICKETS, list(items))
                spendable = round(limit / COST)
                await collector.wait(lambda o: len(o.decisions) >= spendable, 60)
                await asyncio.sleep(2.0)  # anything over the limit would show up now
                assignments.extend(sorted(tp.partition for tp in w.assigned) for w in workers)
                decided = len({d.id for d in collector.out.decisions})
                assert not collector.out.dead
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.wait_for(asyncio.gather(*running), timeout=30)
        return decided

    decided = asyncio.run(scenario())
    calls = [len(t.calls) for t in teachers]
    spent = sum(calls) * COST
    # one call in flight and one started within the ledger's lag per call slot (the lag is
    # far shorter than a call here): see workers/teacher/ledger.py
    in_flight_bound = 2 * len(workers) * concurrency * COST
    print(f"calls per worker {calls}, spent {spent:.2f} of {limit:.2f}, partitions "
          f"{assignments}")
    assert all(assignments) and not set(assignments[0]) & set(assignments[1])
    assert all(n > 0 for n in calls)  # both spent from the one budget
    assert limit <= spent + 1e-9  # the budget was used, not wasted ...
    assert spent <= limit + in_flight_bound + 1e-9  # ... and not doubled (alone: 2 × limit)
    assert decided == sum(calls) < len(items)  # the rest wait in Kafka
    for worker in workers:  # each sees the group's spend, not only its own
        assert worker.resolver.budget.cost_left < COST


def _reset_group(settings: Settings) -> None:
    """Commit offset 0 on every teacher partition: the group will get every request again."""
    async def go() -> None:
        consumer = AIOKafkaConsumer(group_id=group_id(settings, TICKETS),
                                    enable_auto_commit=False, **settings.aiokafka_kwargs())
        await consumer.start()
        try:
            topic = settings.topic(TICKETS.teacher_topic)
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(tps)
            await consumer.commit({tp: 0 for tp in tps})
        finally:
            await consumer.stop()

    asyncio.run(go())


def test_a_worker_with_an_empty_state_folder_pays_nothing_twice(kafka_settings: Settings,
                                                                 tmp_path: Path) -> None:
    limit = 10.0
    first_host = host(kafka_settings, tmp_path, "first", teacher_cost_per_hour=limit)
    other_host = host(kafka_settings, tmp_path, "other", teacher_cost_per_hour=limit)
    items = [req(f"re{i}", TICKETS.label_names[i % 12]) for i in range(12)]
    ids = {r.id for r in items}

    async def run(settings: Settings, teacher: CountingTeacher, produce_first: bool,
                  decisions: int) -> TeacherWorker:
        worker = TeacherWorker(settings, TICKETS, teacher)
        running = asyncio.create_task(worker.run())
        try:
            async with Collector(kafka_settings, TICKETS) as collector:
                if produce_first:
                    await produce(kafka_settings, TICKETS, list(items))
                await collector.wait(lambda o: len(o.decisions) >= decisions, 60)
                await asyncio.sleep(0.5)
                assert {d.id for d in collector.out.decisions} == ids
                assert len(collector.out.decisions) == decisions
        finally:
            worker.stop()
            await asyncio.wait_for(running, timeout=30)
        return worker

    first_teacher, other_teacher = CountingTeacher(), CountingTeacher()
    asyncio.run(run(first_host, first_teacher, True, len(items)))
    assert sorted(first_teacher.calls) == sorted(ids)
    _reset_group(kafka_settings)  # as if it had died before committing any of them
    assert not (tmp_path / "other").exists()
    other = asyncio.run(run(other_host, other_teacher, False, 2 * len(items)))
    assert other_teacher.calls == []  # every request replayed from the ledger
    assert other.metrics.value("distillery_teacher_outcomes_total", outcome="replayed") == 12
    # and what the first worker spent counts against the budget on the other host
    assert other.resolver.budget.cost_left == pytest.approx(limit - len(items) * COST)


def test_the_ledger_topic_is_compacted_with_the_teacher_topic_partitions(
        kafka_settings: Settings) -> None:
    name = kafka_settings.topic(teacher_ledger_topic(TICKETS))
    [described] = describe_topics(kafka_settings, [name])
    assert described["partitions"] == kafka_settings.topic_partitions
    config: Any = described["config"]
    assert config["cleanup.policy"] == "compact,delete"
    assert config["retention.ms"] == str(kafka_settings.topic_retention_ms)
