"""``distillery bench stream``: the classify worker's throughput and latency on a real broker.

Every run reads the same tickets (the same bytes) on ``partitions`` partitions (12):

1. a raw aiokafka consume→produce passthrough (the ceiling for a Python worker);
2. a plain aiokafka loop calling the same ``process_batch`` as the agent (what faust costs);
3. the real classify worker (faust), as a subprocess; then ``workers`` of them in one
   consumer group (``scaling``: their events/s over one worker's);
4. with ``tiers`` ngram,embed, the cascade: a classify and a refine worker, tier 1 forwarding
   a known share (``workers.bench.stream_cascade``).

The tier-1 runs use a tasks file that says ``tiers = ["ngram"]`` (the built-in default is
the cascade, which would send part of the stream to a refine worker these runs do not start).

The passthrough and the plain loop read pre-produced tickets. The faust runs start their
workers first, wait until the group is stable with every worker in it (so a rebalance is
not counted), then the tickets are produced at full speed. Throughput is taken from the
output records' broker timestamps, the same way for all: over the outputs stamped after the
last input was written (for the faust runs: a backlog, as for the pre-produced runs), so
start-up, group joins and the producer's own CPU are not counted. Latency is measured on
one real worker at a fixed offered rate: output timestamp minus input timestamp, per id.
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
from streams.send import Output
from streams.topics import DEADLETTER_TOPIC, create_topics
from workers.runtime.procs import free_port

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    events: int = 60_000  # long enough that start-up is not the figure
    repeats: int = 3
    offered_rate: float = 1000.0
    latency_seconds: float = 10.0
    workers: int = 2  # the scaling run: this many classify workers in one group
    partitions: int = 12
    tiers: tuple[str, ...] = ("ngram",)  # ("ngram", "embed"): the cascade run as well
    forward: float = 0.4  # the cascade run: the share of the stream tier 1 leaves to tier 2
    cascade_offered_rate: float = 500.0  # the cascade's latency run


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


def _rate(stamps: dict[bytes, float], since_ms: float | None = None) -> float:
    """Outputs per second, first to last; only those stamped at or after ``since_ms``."""
    values = [t for t in stamps.values() if since_ms is None or t >= since_ms]
    if len(values) < 2:
        raise RuntimeError("too few outputs after the inputs were written to measure a rate "
                           "(use more --events)")
    first, last = min(values), max(values)
    return (len(values) - 1) / max((last - first) / 1000.0, 1e-6)


async def _loop(settings: Settings, source: str, sink: str, group: str, n: int,
                handle: Callable[[list[Any]], list[Output]]) -> None:
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
                for out in handle(messages):
                    await producer.send(out.topic or sink, key=out.key, value=out.value)
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


def _wait_for_group(settings: Settings, group: str, members: int,
                    workers: list[subprocess.Popen[bytes]], timeout_s: float = 180) -> None:
    """Until ``group`` is Stable with ``members`` members (each worker joined and assigned)."""
    from workers.runtime.groups import wait_until_stable

    def check(waiting: list[str]) -> None:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a classify worker exited while joining its group")

    wait_until_stable(settings, {group: members}, timeout_s, check)


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


async def _faust_run(s: Settings, task: TaskConfig, cfg: BenchConfig, workers: int,
                     values: list[tuple[bytes, bytes]], workdir: Path, tag: str,
                     announcement: Any, latency: bool, progress: Progress) -> dict[str, float]:
    """``workers`` classify workers in one group under their own prefix: join, then the
    tickets arrive; events/s over the backlog (and latency at a fixed rate if asked)."""
    from streams.announce import publish_announcement
    from workers.bench.stream_cascade import tasks_file

    w = s.model_copy(update={"topic_prefix": f"{s.topic_prefix}{tag}.",
                             "tasks_file": tasks_file(workdir, cascade=False)})
    create_topics(w)
    publish_announcement(w, announcement)
    outputs = [w.topic(task.results_topic), w.topic(task.teacher_topic)]
    procs = [_start_worker(w, w.topic_prefix, workdir / f"worker-{tag}-{i}.log")
             for i in range(workers)]
    figures: dict[str, float] = {}
    try:
        await asyncio.to_thread(_wait_for_group, w, f"{w.topic_prefix}distillery-classify",
                                workers, procs)
        await _produce(w, w.topic(task.input_topic), values)
        written = time.time() * 1000.0
        n = len(values)
        figures["events_per_s"] = _rate(await _collect(w, outputs, n, 300, _key_of), written)
        if latency:
            progress(f"latency at {cfg.offered_rate:.0f} events/s for {cfg.latency_seconds:.0f}s")
            p50, p99 = await latency_run(w, task, outputs, n, cfg.offered_rate,
                                         cfg.latency_seconds, seed=999, timeout_s=120)
            figures.update(p50=p50, p99=p99)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    return figures


async def latency_run(w: Settings, task: TaskConfig, outputs: list[str], already: int,
                      rate: float, seconds: float, seed: int, timeout_s: float
                      ) -> tuple[float, float]:
    """Fresh tickets at ``rate`` for ``seconds`` after ``already`` events came out of
    ``outputs``: (p50, p99) of output timestamp minus send time, in ms."""
    count = int(rate * seconds)
    fresh = [(b"lat-" + k, v) for k, v in _ticket_values(task, count, seed=seed)]
    fresh = [(k, _rekey(v, k)) for k, v in fresh]
    sent = await _produce(w, w.topic(task.input_topic), fresh, rate=rate)
    got = await _collect(w, outputs, already + count, timeout_s, _key_of)
    lat = [got[k] - sent_ms for k, sent_ms in sent.items() if k in got]
    return _percentile(lat, 0.5), _percentile(lat, 0.99)


def _key_of(m: Any) -> bytes | None:
    return m.key  # type: ignore[no-any-return]


async def _one_repeat(settings: Settings, task: TaskConfig, cfg: BenchConfig, repeat: int,
                      student: StudentLike, manifest: Any, workdir: Path,
                      progress: Progress, cascade: list[Any] | None = None) -> dict[str, float]:
    from streams.announce import announcement_for

    s = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}r{repeat}."})
    create_topics(s)
    for extra in ("bench.passthrough", "bench.plain"):
        create_topics(s, [_spec(s, extra)])
    values = _ticket_values(task, cfg.events, seed=100 + repeat)
    await _produce(s, s.topic(task.input_topic), values)
    n = cfg.events

    progress(f"repeat {repeat + 1}: raw passthrough")
    await _loop(s, s.topic(task.input_topic), s.topic("bench.passthrough"), "pass", n,
                lambda ms: [Output("", m.key, m.value) for m in ms])
    passthrough = _rate(await _collect(s, [s.topic("bench.passthrough")], n, 120, _key_of))

    progress(f"repeat {repeat + 1}: plain aiokafka loop with process_batch")
    rt = _runtime(s, task, student)
    rt.topics = {k: s.topic("bench.plain") for k in ("results", "teacher", "deadletter")}
    await _loop(s, s.topic(task.input_topic), s.topic("bench.plain"), "plain", n,
                lambda ms: process_batch(rt, [RawEvent.of_record(m) for m in ms]))
    plain = _rate(await _collect(s, [s.topic("bench.plain")], n, 120, _key_of))

    announcement = announcement_for(task.name, manifest.version, manifest.directory,
                                    manifest.sha256, manifest.labels, {})
    runs: dict[str, float] = {"passthrough": passthrough, "plain": plain}
    for workers in sorted({1, cfg.workers}):
        progress(f"repeat {repeat + 1}: {workers} classify worker(s) (faust), one group")
        tag = f"w{workers}"
        got = await _faust_run(s, task, cfg, workers, values, workdir, tag, announcement,
                               latency=(repeat == 0 and workers == 1), progress=progress)
        runs[f"faust_{workers}"] = got.pop("events_per_s")
        runs.update(got)
    runs["faust"] = runs["faust_1"]
    if cascade is not None:
        from workers.bench.stream_cascade import cascade_run

        progress(f"repeat {repeat + 1}: the cascade (a classify and a refine worker)")
        got = await cascade_run(s, task, cfg, values, workdir / f"cascade-{repeat}", cascade,
                                latency=repeat == 0, progress=progress)
        runs["cascade"] = got.pop("events_per_s")
        runs.update(got)
    return runs


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
    """Run the measurements ``cfg.repeats`` times; report medians and ratios.

    Its topics live under a prefix of its own, deleted at the end unless ``keep_topics``."""
    from models.stage import Stage
    from workers.runtime.stack import remove_topics

    task = get_task(settings, "tickets").model_copy(update={"tiers": ["ngram"]})
    with tempfile.TemporaryDirectory(prefix="distillery-bench-") as tmp:
        workdir = Path(tmp)
        s = settings.model_copy(update={
            "topic_prefix": f"{settings.topic_prefix}bench{uuid.uuid4().hex[:6]}.",
            "registry_root": workdir / "registry",
            "state_dir": workdir / "state",
            "topic_partitions": cfg.partitions,
        })
        manifest = _bench_student(s, task, progress)
        student = Stage.load(manifest.directory, expected_sha256=manifest.sha256,
                               threads=s.student_threads)
        cascade = None
        if "embed" in cfg.tiers:
            from workers.bench.stream_cascade import prepare_models

            cascade = prepare_models(s, task, cfg.forward, progress)
        try:
            runs = []
            for r in range(cfg.repeats):
                (workdir / f"cascade-{r}").mkdir()
                runs.append(asyncio.run(_one_repeat(s, task, cfg, r, student, manifest, workdir,
                                                    progress, cascade)))
        finally:
            if not keep_topics:
                remove_topics(s)
    keys = sorted({"passthrough", "plain", "faust", f"faust_{cfg.workers}"})
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    extra = _cascade_figures(runs, cfg) if cascade is not None else {}
    ratios = [r["faust"] / r["passthrough"] for r in runs]
    scalings = [r[f"faust_{cfg.workers}"] / r["faust"] for r in runs]
    return {
        "events": cfg.events,
        "repeats": cfg.repeats,
        "partitions": cfg.partitions,
        "workers": cfg.workers,
        "events_per_s": med["faust"],
        "workers_events_per_s": med[f"faust_{cfg.workers}"],
        "passthrough_events_per_s": med["passthrough"],
        "plain_loop_events_per_s": med["plain"],
        # each ratio against its baseline from the same repeat, then the median of those
        "ratio": statistics.median(ratios),
        "ratio_runs": ratios,
        "ratio_to_plain_loop": statistics.median(r["faust"] / r["plain"] for r in runs),
        "scaling": statistics.median(scalings),
        "scaling_runs": scalings,
        "latency_ms": {"p50": runs[0]["p50"], "p99": runs[0]["p99"]},
        "offered_rate": cfg.offered_rate,
        **extra,
        "runs": runs,
    }


def _cascade_figures(runs: list[dict[str, float]], cfg: BenchConfig) -> dict[str, Any]:
    """Medians of the cascade runs, the ratio to each run's own passthrough."""
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ratios = [r["cascade"] / r["passthrough"] for r in runs]
    return {"cascade": {
        "tiers": list(cfg.tiers),
        "events_per_s": med("cascade"),
        "ratio": statistics.median(ratios),
        "ratio_runs": ratios,
        "forward_target": cfg.forward,
        "forwarded_share": med("forwarded_share"),
        "tier1_cpu_ms_per_item": med("tier1_cpu_ms_per_item"),
        "tier2_cpu_ms_per_item": med("tier2_cpu_ms_per_item"),
        "tier1_items_per_cpu_s": 1000.0 / max(med("tier1_cpu_ms_per_item"), 1e-9),
        "tier2_items_per_cpu_s": 1000.0 / max(med("tier2_cpu_ms_per_item"), 1e-9),
        "offered_rate": cfg.cascade_offered_rate,
        "latency_ms": {"p50": runs[0]["cascade_p50"], "p99": runs[0]["cascade_p99"]},
    }}
