"""``distillery bench stream``: the classify worker's throughput and latency on a real broker.

Three consumers read the same pre-produced tickets, each in its own consumer group:

1. a raw aiokafka consume→produce passthrough (the ceiling for a Python worker);
2. a plain aiokafka loop calling the same ``process_batch`` as the agent (what faust costs);
3. the real classify worker (faust), as a subprocess.

Throughput is taken from the output records' broker timestamps, first to last, the same way
for all three, so start-up and group joins are not counted. Latency is measured on the real
worker at a fixed offered rate: output timestamp minus input timestamp, per id.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillery.settings import Settings
from distillery.tasks import TaskConfig, get_task
from schemas.serde import encode
from streams.app import TaskRuntime, process_batch
from streams.decode import RawEvent
from streams.hotswap import ModelHolder
from streams.metrics import ClassifyMetrics
from streams.routing import Policy, StudentLike
from streams.topics import DEADLETTER_TOPIC, create_topics
from workers.runtime.procs import free_port

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    events: int = 20_000
    repeats: int = 3
    offered_rate: float = 1000.0
    latency_seconds: float = 10.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _produce(settings: Settings, topic: str, values: list[tuple[bytes, bytes]],
                   rate: float | None = None) -> dict[bytes, float]:
    """Produce (key, value) pairs; at ``rate`` per second if given. Returns send times (ms)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(linger_ms=5, acks="all", **settings.aiokafka_kwargs())
    await producer.start()
    sent: dict[bytes, float] = {}
    try:
        started = time.monotonic()
        for i, (key, value) in enumerate(values):
            if rate is not None:
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send(topic, key=key, value=value)
            sent[key] = time.time() * 1000.0
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _collect(settings: Settings, topics: list[str], want: int, timeout_s: float,
                   ids_of: Callable[[Any], bytes | None]) -> dict[bytes, float]:
    """Read output topics from the beginning until ``want`` distinct keys: key → first ts (ms)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, group_id=None, auto_offset_reset="earliest",
                                **settings.aiokafka_kwargs())
    await consumer.start()
    seen: dict[bytes, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                for m in messages:
                    key = ids_of(m)
                    if key is not None and key not in seen:
                        seen[key] = float(m.timestamp)
    finally:
        await consumer.stop()
    if len(seen) < want:
        raise RuntimeError(f"only {len(seen)} of {want} events came out within {timeout_s:.0f}s")
    return seen


def _rate(stamps: dict[bytes, float]) -> float:
    first, last = min(stamps.values()), max(stamps.values())
    return (len(stamps) - 1) / max((last - first) / 1000.0, 1e-6)


async def _loop(settings: Settings, source: str, sink: str, group: str, n: int,
                handle: Callable[[list[Any]], list[tuple[str, bytes | None, bytes]]]) -> None:
    """A plain aiokafka consume→handle→produce loop over ``n`` events."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(source, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, **settings.aiokafka_kwargs())
    producer = AIOKafkaProducer(linger_ms=5, acks="all", **settings.aiokafka_kwargs())
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.batch_size)
            for messages in batch.values():
                for topic, key, value in handle(messages):
                    await producer.send(topic or sink, key=key, value=value)
                done += len(messages)
            await producer.flush()
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def _runtime(settings: Settings, task: TaskConfig, student: StudentLike) -> TaskRuntime:
    holder = ModelHolder(task.name, lambda a: student, lambda t, v: None)
    holder.current = student
    rt = TaskRuntime(task, holder, Policy(settings.audit_rate, settings.critical_floor),
                     settings.max_text_chars, ClassifyMetrics())
    rt.topics = {
        "results": settings.topic(task.results_topic),
        "teacher": settings.topic(task.teacher_topic),
        "deadletter": settings.topic(DEADLETTER_TOPIC),
    }
    return rt


def _raw(m: Any) -> RawEvent:
    return RawEvent(m.topic, m.partition, m.offset, m.key, m.value, float(m.timestamp))


def _start_worker(settings: Settings, group_prefix: str, log_file: Path) -> subprocess.Popen[bytes]:
    from distillery.settings import child_env

    # the child is configured the way a user would: DISTILLERY_* variables
    env = child_env(settings.model_copy(update={"topic_prefix": group_prefix,
                                                "web_port": free_port()}))
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "classify", "--task", "tickets",
             "--loglevel", "WARNING"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def _ticket_values(task: TaskConfig, n: int, seed: int) -> list[tuple[bytes, bytes]]:
    from workers.sim.synth import generate

    return [(t.id.encode(), encode(t)) for t in generate(task.name, n, seed=seed)]


def _bench_student(settings: Settings, task: TaskConfig, progress: Progress) -> Any:
    """Train a small student on synthetic tickets and publish it to the bench registry."""
    from models.pipeline import publish_and_promote, train_version
    from workers.sim.synth import generate

    progress("training a student on 4,000 synthetic tickets")
    items = generate(task.name, 4000, seed=7)
    texts = [i.text_of(task.text_fields) for i in items]
    labels = [i.metadata["oracle_label"] for i in items]
    result = train_version(texts, labels, task=task, settings=settings, seed=0)
    manifest, _ = publish_and_promote(result, task=task, settings=settings, force=True)
    return manifest


async def _one_repeat(settings: Settings, task: TaskConfig, cfg: BenchConfig, repeat: int,
                      student: StudentLike, manifest: Any, workdir: Path,
                      progress: Progress) -> dict[str, float]:
    from streams.announce import announcement_for, publish_announcement

    s = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}r{repeat}."})
    create_topics(s)
    for extra in ("bench.passthrough", "bench.plain"):
        create_topics(s, [_spec(s, extra)])
    values = _ticket_values(task, cfg.events, seed=100 + repeat)
    await _produce(s, s.topic(task.input_topic), values)
    n = cfg.events
    key_of: Callable[[Any], bytes | None] = lambda m: m.key  # noqa: E731

    progress(f"repeat {repeat + 1}: raw passthrough")
    await _loop(s, s.topic(task.input_topic), s.topic("bench.passthrough"), "pass", n,
                lambda ms: [("", m.key, m.value) for m in ms])
    passthrough = _rate(await _collect(s, [s.topic("bench.passthrough")], n, 120, key_of))

    progress(f"repeat {repeat + 1}: plain aiokafka loop with process_batch")
    rt = _runtime(s, task, student)
    rt.topics = {k: s.topic("bench.plain") for k in ("results", "teacher", "deadletter")}
    await _loop(s, s.topic(task.input_topic), s.topic("bench.plain"), "plain", n,
                lambda ms: process_batch(rt, [_raw(m) for m in ms]))
    plain = _rate(await _collect(s, [s.topic("bench.plain")], n, 120, key_of))

    progress(f"repeat {repeat + 1}: the classify worker (faust)")
    publish_announcement(s, announcement_for(
        task.name, manifest.version, manifest.directory, manifest.sha256, manifest.labels, {}
    ))
    worker = _start_worker(s, s.topic_prefix, workdir / f"worker-{repeat}.log")
    try:
        outputs = [s.topic(task.results_topic), s.topic(task.teacher_topic)]
        faust_rate = _rate(await _collect(s, outputs, n, 300, key_of))
        latency: dict[str, float] = {}
        if repeat == 0:
            progress(f"latency at {cfg.offered_rate:.0f} events/s for {cfg.latency_seconds:.0f}s")
            count = int(cfg.offered_rate * cfg.latency_seconds)
            fresh = [(b"lat-" + k, v) for k, v in _ticket_values(task, count, seed=999)]
            fresh = [(k, _rekey(v, k)) for k, v in fresh]
            sent = await _produce(s, s.topic(task.input_topic), fresh, rate=cfg.offered_rate)
            got = await _collect(s, outputs, n + count, 120, key_of)
            lat = [got[k] - sent_ms for k, sent_ms in sent.items() if k in got]
            latency = {"p50": _percentile(lat, 0.5), "p99": _percentile(lat, 0.99)}
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return {"passthrough": passthrough, "plain": plain, "faust": faust_rate, **latency}


def _rekey(value: bytes, key: bytes) -> bytes:
    from schemas.records import Ticket
    from schemas.serde import decode

    ticket = decode(value, Ticket)
    return encode(ticket.model_copy(update={"id": key.decode()}))


def _spec(settings: Settings, name: str) -> Any:
    from streams.topics import TopicSpec

    return TopicSpec(settings.topic(name), "raw", settings.topic_partitions)


def run_stream_bench(settings: Settings, cfg: BenchConfig, progress: Progress,
                     keep_topics: bool = False) -> dict[str, Any]:
    """Run the three measurements ``cfg.repeats`` times; report medians and ratios.

    Its topics live under a prefix of its own, deleted at the end unless ``keep_topics``."""
    from models.runtime import Student
    from workers.runtime.stack import remove_topics

    task = get_task(settings, "tickets")
    with tempfile.TemporaryDirectory(prefix="distillery-bench-") as tmp:
        workdir = Path(tmp)
        s = settings.model_copy(update={
            "topic_prefix": f"{settings.topic_prefix}bench{uuid.uuid4().hex[:6]}.",
            "registry_root": workdir / "registry",
            "state_dir": workdir / "state",
        })
        manifest = _bench_student(s, task, progress)
        student = Student.load(manifest.directory, expected_sha256=manifest.sha256,
                               threads=s.student_threads)
        try:
            runs = [
                asyncio.run(_one_repeat(s, task, cfg, r, student, manifest, workdir, progress))
                for r in range(cfg.repeats)
            ]
        finally:
            if not keep_topics:
                remove_topics(s)
    med = {k: statistics.median(r[k] for r in runs) for k in ("passthrough", "plain", "faust")}
    return {
        "events": cfg.events,
        "repeats": cfg.repeats,
        "events_per_s": med["faust"],
        "passthrough_events_per_s": med["passthrough"],
        "plain_loop_events_per_s": med["plain"],
        "ratio": med["faust"] / med["passthrough"],
        "ratio_to_plain_loop": med["faust"] / med["plain"],
        "latency_ms": {"p50": runs[0]["p50"], "p99": runs[0]["p99"]},
        "offered_rate": cfg.offered_rate,
        "runs": runs,
    }
