"""``backtest --via-kafka``: the same history through real topics and the real workers.

Under a topic prefix of its own: the bootstrap version is trained and announced first, then
the classify, teacher (``recorded``, answering from the history's teacher column) and trainer
workers run as child processes; once each has joined its consumer group (a worker's start-up
is not part of the stream's timing) the history is produced at a steady rate; the outcome
is read back from the results and verdicts topics, and the prefix's topics and groups are
deleted at the end. With ``tiers`` ``ngram,embed`` the task
runs the cascade: a refine worker joins them (tier 2, trained and announced by the same
trainer once it has verdicts), and each item's tier is read off its decision
(``workers.report.figures.tier_of``: a student decision whose ``model_version`` starts with
``embed-`` is tier 2's), as the in-process backtest counts it.

By default the history goes in **lockstep** (``workers.offline.lockstep``): a batch of the
in-process backtest's size at a time, the next only once every worker has caught up, a due
refresh is done and the workers serve what it promoted — so the run reproduces the
in-process one on any machine. ``rate`` (``backtest --via-kafka --rate N``) paces it by the
clock instead, the workers racing the stream as they would live.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import Decision, TeacherVerdict, TextItem
from schemas.serde import decode, encode
from streams.announce import announce_manifest
from workers.offline.backtest import BacktestConfig, HistoryRow, backtest_task
from workers.offline.embedcache import TextEmbeddings
from workers.offline.figures import BacktestFigures, figures_of
from workers.report.figures import tier_of
from workers.runtime.procs import free_port
from workers.runtime.stack import children, prepare, remove_topics
from workers.runtime.supervisor import Supervisor
from workers.trainer.refresh import refresh_config, refresh_once


def _tasks_toml(task: TaskConfig) -> str:
    labels = ", ".join(
        f'{{ name = {json.dumps(spec.name)}, critical = {"true" if spec.critical else "false"} }}'
        for spec in task.labels
    )
    return (f'[tasks.{task.name}]\nschema = "text"\nlabels = [{labels}]\n'
            f"tiers = {json.dumps(list(task.tiers))}\n")


def _read(settings: Settings, topic: str) -> list[Any]:
    import asyncio

    from workers.trainer.consume import read_range

    return asyncio.run(read_range(settings, [settings.topic(topic)]))


def run_via_kafka(settings: Settings, history: list[HistoryRow], bootstrap: list[tuple[str, str]],
                  cfg: BacktestConfig, shuffle: int | None, rate: float = 150.0,
                  progress: Callable[[str], None] = print, timeout_s: float = 900.0,
                  logs: Path | None = None, lockstep: bool = True) -> BacktestFigures:
    """The backtest through Kafka; ``logs``: where the workers' log files go (default: a
    temporary directory, deleted with everything else at the end); ``lockstep`` (the
    default) or paced at ``rate`` items a second."""
    import random


    if shuffle is not None:
        history = history[:]
        random.Random(shuffle).shuffle(history)
    task = backtest_task(history, bootstrap, cfg.critical, cfg.tiers)
    with tempfile.TemporaryDirectory(prefix="distillery-backtest-") as tmp:
        home = Path(tmp)
        (home / "tasks.toml").write_text(_tasks_toml(task), encoding="utf-8")
        with open(home / "teacher.jsonl", "w", encoding="utf-8") as handle:
            for row in history:
                handle.write(json.dumps({"id": row.id, "label": row.teacher}) + "\n")
        s = settings.model_copy(update={
            "topic_prefix": f"{settings.topic_prefix}backtest-{uuid.uuid4().hex[:6]}.",
            "tasks_file": home / "tasks.toml", "registry_root": home / "registry",
            "state_dir": home / "state", "teacher_kind": "recorded",
            "teacher_recorded_path": home / "teacher.jsonl",
            "refresh_every_verdicts": cfg.retrain_every or settings.refresh_every_verdicts,
            "audit_rate": cfg.audit_rate,
            "critical_floor": cfg.critical_floor, "teacher_calls_per_minute": 1e6,
            "teacher_cost_per_hour": 1e6,
            "metrics_port": 0,  # the refine worker's /metrics: off, no port to collide on
            # in lockstep a refresh is due by verdicts only, as in-process
            "refresh_every_minutes": 1e9 if lockstep else settings.refresh_every_minutes,
        })
        boot_file = home / "bootstrap.jsonl"
        with open(boot_file, "w", encoding="utf-8") as handle:
            for text, label in bootstrap:
                handle.write(json.dumps({"text": text, "label": label}) + "\n")
        s, broker = prepare(s, [task])
        if bootstrap:  # both stages from the bootstrap, as the in-process run starts
            embeddings = TextEmbeddings(s) if task.cascade else None
            try:
                refresh_once(s, task, bootstrap, [], 0, refresh_config(s, task=task),
                             announce=lambda m: announce_manifest(s, m), embedder=embeddings,
                             announce_tier2=lambda m: announce_manifest(s, m))
            finally:
                if embeddings is not None:
                    embeddings.close()
        kids = children(s, [task], logs or home / "logs",
                        bootstrap_files={"backtest": boot_file})
        refine_port = free_port() if lockstep and task.cascade else None
        for kid in kids:  # the barrier reads which version the refine worker serves
            if refine_port and kid.argv[:2] == ["worker", "refine"]:
                kid.argv = [*kid.argv, "--metrics-port", str(refine_port)]
        supervisor = Supervisor(s, kids)
        supervisor.start()
        try:
            _await_workers(s, task, supervisor, progress)
            if lockstep:
                _produce_in_lockstep(s, task, history, cfg.batch_size, refine_port,
                                     supervisor, progress)
            else:
                _produce(s, history, rate, supervisor, progress)
            decided = _await_decisions(s, {r.id for r in history}, supervisor, timeout_s,
                                       progress)
            verdicts = {decode(m.value, TeacherVerdict).id for m in _read(s, "backtest.verdicts")}
        finally:
            supervisor.shutdown()
            if broker is not None:
                broker.stop()
            else:
                remove_topics(s)
    labels = [decided[r.id].label for r in history]
    by: list[str] = [str(decided[r.id].decided_by) for r in history]
    tiers = [tier_of(decided[r.id]) for r in history]
    return figures_of(history, task, cfg, s, labels, by, len(verdicts), [], tiers=tiers)


def worker_groups(s: Settings, task: TaskConfig) -> list[str]:
    """The consumer groups the backtest's workers join: classify, teacher, the trainer's
    leadership lock and, in a cascade, refine."""
    from streams.refine import group_id as refine_group
    from workers.teacher.worker import group_id as teacher_group
    from workers.trainer.leader import lock_group

    groups = [f"{s.topic_prefix}distillery-classify", teacher_group(s, task),
              lock_group(s, task.name)]
    return groups + ([refine_group(s, task)] if task.cascade else [])


def _await_workers(s: Settings, task: TaskConfig, supervisor: Supervisor,
                   progress: Callable[[str], None], timeout_s: float = 180.0) -> None:
    """Return once every worker's consumer group is ``Stable`` (its member joined)."""
    from workers.runtime.groups import wait_until_stable

    def between(waiting: list[str]) -> None:
        supervisor.poll()
        progress(f"waiting for {', '.join(waiting)}")

    try:
        wait_until_stable(s, dict.fromkeys(worker_groups(s, task)), timeout_s, between,
                          poll_s=1.0)
    except TimeoutError as exc:
        raise RuntimeError(f"workers not ready: {exc}") from exc


def _produce(s: Settings, history: list[HistoryRow], rate: float, supervisor: Supervisor,
             progress: Callable[[str], None]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", linger_ms=5, **s.kafka_python_kwargs())
    started = time.monotonic()
    for i, row in enumerate(history):
        item = TextItem(id=row.id, text=row.text)
        producer.send(s.topic("backtest"), key=row.id.encode(), value=encode(item))
        delay = started + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i % 1000 == 999:
            supervisor.poll()
            progress(f"produced {i + 1} of {len(history)}")
    producer.flush()
    producer.close()


def _produce_in_lockstep(s: Settings, task: TaskConfig, history: list[HistoryRow],
                         batch_size: int, refine_port: int | None, supervisor: Supervisor,
                         progress: Callable[[str], None]) -> None:
    from kafka import KafkaProducer

    from streams.refine import group_id as refine_group
    from workers.offline.lockstep import Barrier, Hop
    from workers.teacher.worker import group_id as teacher_group

    hops = [Hop(f"{s.topic_prefix}distillery-classify", "backtest")]
    if task.cascade:
        hops.append(Hop(refine_group(s, task), task.refine_topic))
    hops += [Hop(teacher_group(s, task), task.teacher_topic),
             Hop(f"{s.topic_prefix}distillery-trainer-{task.name}", task.verdicts_topic)]
    barrier = Barrier(s, task, hops, s.web_port, refine_port, poll=supervisor.poll)
    producer = KafkaProducer(linger_ms=5, **s.kafka_python_producer_kwargs())
    trainer = next(c for c in supervisor.children if c.argv[:2] == ["worker", "trainer"])

    def signal_trainer(sig: int) -> None:
        if trainer.proc is not None and trainer.proc.poll() is None:
            os.kill(trainer.proc.pid, sig)

    # each row's event time is its place in the history (a millisecond apart, in the past):
    # the trainer orders verdicts by it, as the in-process backtest orders them by place
    base_ms = int(time.time() * 1000) - len(history) - 1
    try:
        for start in range(0, len(history), batch_size):
            signal_trainer(signal.SIGSTOP)
            for i, row in enumerate(history[start:start + batch_size], start):
                producer.send(s.topic("backtest"), key=row.id.encode(),
                              value=encode(TextItem(id=row.id, text=row.text)),
                              timestamp_ms=base_ms + i)
            producer.flush()
            barrier.wait(release=lambda: signal_trainer(signal.SIGCONT))
            done = min(len(history), start + batch_size)
            if done % 1000 < batch_size or done == len(history):
                progress(f"produced {done} of {len(history)} in lockstep "
                         f"({barrier.waited_s:.0f} s waiting for the loop)")
    finally:
        signal_trainer(signal.SIGCONT)
        producer.close()
        barrier.close()


def _await_decisions(s: Settings, ids: set[str], supervisor: Supervisor, timeout_s: float,
                     progress: Callable[[str], None]) -> dict[str, Decision]:
    deadline = time.monotonic() + timeout_s
    decided: dict[str, Decision] = {}
    while time.monotonic() < deadline:
        for m in _read(s, "backtest.decisions"):
            d = decode(m.value, Decision)
            decided.setdefault(d.id, d)
        if ids <= set(decided):
            return decided
        progress(f"decided {len(decided)} of {len(ids)}")
        supervisor.poll()
        time.sleep(2.0)
    missing = len(ids - set(decided))
    raise RuntimeError(f"{missing} events were not decided within {timeout_s:.0f}s")
