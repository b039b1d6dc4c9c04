"""Helpers for stream tests: run the classify worker as a real process, read what came out."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from distillery.settings import Settings
from schemas.records import DeadLetter, Decision, TeacherRequest
from schemas.serde import decode
from workers.runtime.procs import free_port

REPO = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env.update({
        "DISTILLERY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "DISTILLERY_TOPIC_PREFIX": settings.topic_prefix,
        "DISTILLERY_REGISTRY_ROOT": str(settings.registry_root),
        "DISTILLERY_STATE_DIR": str(settings.state_dir),
        "DISTILLERY_WEB_PORT": str(free_port()),
        "DISTILLERY_STUDENT_BUCKETS": str(settings.student_buckets),
        "DISTILLERY_BATCH_WITHIN_S": "0.05",
        "DISTILLERY_AUDIT_RATE": str(settings.audit_rate),
        **extra,
    })
    return env


def start_classify(settings: Settings, log_file: Path, tasks: tuple[str, ...] = ("tickets",),
                   **extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "workers.cli", "worker", "classify"]
    for task in tasks:
        args += ["--task", task]
    out = open(log_file, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(args, env=worker_env(settings, **extra), cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT)


def start_worker(settings: Settings, log_file: Path, kind: str, task: str = "tickets",
                 metrics_port: int | None = None, **extra: str) -> subprocess.Popen[bytes]:
    """``distillery worker <kind> --task <task>`` (refine, teacher) as a process of its own."""
    port = free_port() if metrics_port is None else metrics_port
    out = open(log_file, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", kind, "--task", task,
         "--metrics-port", str(port)],
        env=worker_env(settings, **extra), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def serve_tickets_version(settings: Settings, texts: list[str], labels: list[str]) -> None:
    """Train a tickets version on ``texts``, publish and promote it, and announce it."""
    from distillery.tasks import TICKETS
    from models.pipeline import train_version
    from models.registry import Registry
    from streams.announce import announce_manifest

    trained = train_version(texts, labels, task=TICKETS, settings=settings, seed=0)
    registry = Registry(settings.registry_root)
    manifest = registry.publish("tickets", trained.model, trained.manifest())
    registry.promote("tickets", manifest.version)
    announce_manifest(settings, registry.show("tickets", manifest.version))


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every message of a topic, from the beginning to its current end."""
    from workers.trainer.consume import read_range

    return asyncio.run(read_range(settings, [settings.topic(topic)]))


def collect(settings: Settings, task_results: str, task_teacher: str, want_ids: set[str],
            want_dead: int, timeout_s: float = 120) -> dict[str, Any]:
    """Poll the three output topics until every wanted id and dead letter came out."""
    deadline = time.monotonic() + timeout_s
    while True:
        decisions = [decode(m.value, Decision) for m in read_all(settings, task_results)]
        requests = [decode(m.value, TeacherRequest) for m in read_all(settings, task_teacher)]
        dead = [decode(m.value, DeadLetter) for m in read_all(settings, "deadletter")]
        seen = {d.id for d in decisions} | {r.id for r in requests if r.reason != "audit"}
        if (want_ids <= seen and len(dead) >= want_dead) or time.monotonic() > deadline:
            return {
                "decisions": decisions, "requests": requests, "dead": dead,
                "decision_counts": Counter(d.id for d in decisions),
                "request_counts": Counter(r.id for r in requests),
            }
        time.sleep(1.0)


def produce_paced(settings: Settings, items: list[tuple[bytes, bytes]], rate: float) -> None:
    """Produce (key, value) pairs to the ``tickets`` topic at ``rate`` a second."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", linger_ms=5, **settings.kafka_python_kwargs())
    started = time.monotonic()
    for i, (key, value) in enumerate(items):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.send(settings.topic("tickets"), key=key, value=value)
    producer.flush()
    producer.close()


def wait_until_consuming(settings: Settings, members: int = 1, timeout_s: float = 120,
                         workers: tuple[subprocess.Popen[bytes], ...] = ()) -> None:
    """Until the classify group is Stable with ``members`` members: produced next, a stream
    is read as it comes, not as a backlog whose size depends on the machine's speed."""
    from workers.runtime.groups import wait_until_stable

    def check(waiting: list[str]) -> None:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a classify worker exited before it joined its group")

    wait_until_stable(settings, {f"{settings.topic_prefix}distillery-classify": members},
                      timeout_s, check)


def wait_for_stored_verdicts(settings: Settings, n: int, task: str = "tickets",
                             timeout_s: float = 120) -> None:
    """Until the trainer's store (its SQLite file under the state folder) holds ``n``
    verdicts of ``task``."""
    import sqlite3

    path = settings.state_dir / "trainer" / f"{settings.topic_prefix}{task}.sqlite"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file():
            with sqlite3.connect(path) as db:
                if db.execute("SELECT count(*) FROM verdicts").fetchone()[0] >= n:
                    return
        time.sleep(1.0)
    raise AssertionError(f"the trainer did not store {n} verdicts in {timeout_s:.0f}s")


def start_trainer(env: dict[str, str], log_file: Path, task: str = "tickets"
                  ) -> subprocess.Popen[bytes]:
    """``distillery worker trainer --task T`` as a child with this environment."""
    out = open(log_file, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", "trainer",
                             "--task", task], env=env, cwd=REPO, stdout=out,
                            stderr=subprocess.STDOUT)
