"""``distillery demo``: the whole loop on synthetic streams, under a topic prefix of its own.

It brings the system up with the ``oracle`` teacher (answers from each item's
``metadata.oracle_label``), produces the synthetic streams at a steady rate, shows live
progress, waits until every event is decided or dead-lettered, writes the report and shuts
everything down (unless asked to keep it running).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import DeadLetter, Decision, ModelAnnouncement
from schemas.serde import decode, encode
from workers.runtime.stack import children, prepare
from workers.runtime.supervisor import Supervisor


@dataclass
class Tally:
    produced: set[str] = field(default_factory=set)
    decided: dict[str, str] = field(default_factory=dict)  # id -> decided_by (first decision)
    dead: int = 0
    dead_keys: set[str] = field(default_factory=set)
    promoted: list[str] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=1000))

    def observe(self, topic_role: str, value: bytes, key: bytes | None) -> None:
        if topic_role == "results":
            d = decode(value, Decision)
            if d.id not in self.decided:
                self.decided[d.id] = d.decided_by
                self.recent.append(d.decided_by)
        elif topic_role == "dead":
            letter = decode(value, DeadLetter)
            self.dead += 1
            if letter.key:
                self.dead_keys.add(letter.key.decode("utf-8", "replace"))
        elif topic_role == "models":
            a = decode(value, ModelAnnouncement)
            if a.action == "promote":
                self.promoted.append(f"{a.task} {a.version}")

    def share(self, window: deque[str] | None = None) -> float:
        values = list(window) if window is not None else list(self.decided.values())
        return values.count("student") / len(values) if values else 0.0

    def open_ids(self) -> set[str]:
        return self.produced - set(self.decided) - self.dead_keys


def _demo_settings(settings: Settings) -> Settings:
    prefix = f"demo-{uuid.uuid4().hex[:6]}."
    home = settings.state_dir / "demo" / prefix.rstrip(".")
    return settings.model_copy(update={
        "topic_prefix": prefix, "teacher_kind": "oracle", "registry_root": home / "registry",
        "refresh_every_verdicts": min(settings.refresh_every_verdicts, 200),
        "refresh_every_minutes": min(settings.refresh_every_minutes, 1.0),
        # the oracle costs nothing: no budget should hold the demo back
        "teacher_calls_per_minute": 1e6, "teacher_cost_per_hour": 1e6,
    })


def _consumer(settings: Settings, tasks: list[TaskConfig]) -> tuple[Any, dict[str, str]]:
    from kafka import KafkaConsumer, TopicPartition

    roles = {settings.topic(t.results_topic): "results" for t in tasks}
    roles[settings.topic("deadletter")] = "dead"
    roles[settings.topic("models")] = "models"
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                             **settings.kafka_python_kwargs())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # fresh topics may take a moment to show in metadata
        consumer.topics()
        if all(consumer.partitions_for_topic(t) for t in roles):
            break
        time.sleep(0.5)
    parts = [TopicPartition(t, p) for t in roles for p in consumer.partitions_for_topic(t) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    return consumer, roles


def _drain(consumer: Any, roles: dict[str, str], tally: Tally) -> None:
    for messages in consumer.poll(timeout_ms=50, max_records=5000).values():
        for m in messages:
            tally.observe(roles[m.topic], m.value, m.key)


def _view(tally: Tally, started: float, phase: str) -> Table:
    elapsed = max(time.monotonic() - started, 1e-6)  # since the first event was produced
    table = Table("", "", title=f"distillery demo — {phase}")
    produced = len(tally.produced)
    table.add_row("events produced", f"{produced:,} ({produced / elapsed:,.0f}/s)")
    table.add_row("decided", f"{len(tally.decided):,}")
    table.add_row("decided by the student", f"{tally.share():.1%} overall, "
                  f"{tally.share(tally.recent):.1%} of the last {len(tally.recent)}")
    by_teacher = sum(1 for v in tally.decided.values() if v != "student")
    table.add_row("teacher decisions", f"{by_teacher:,}")
    table.add_row("model versions", ", ".join(tally.promoted[-4:]) or "none yet (cold start)")
    table.add_row("dead letters", str(tally.dead))
    return table


def run_demo(settings: Settings, tasks: list[TaskConfig], n: int, rate: float, out_dir: Path,
             keep_running: bool, console: Console, settle_s: float = 240.0) -> dict[str, Any]:
    from kafka import KafkaProducer

    from workers.report.figures import build_report
    from workers.sim.synth import generate

    started = time.monotonic()
    s, broker = prepare(_demo_settings(settings), tasks)
    supervisor = Supervisor(s, children(s, tasks, s.state_dir / "demo" / "logs"))
    supervisor.start()
    tally = Tally()
    consumer, roles = _consumer(s, tasks)
    try:
        streams = [(t, generate(t.name, n, seed=1, drift_at=0.7)) for t in tasks]
        producer = KafkaProducer(acks="all", linger_ms=5, **s.kafka_python_kwargs())
        produce_start = time.monotonic()
        first = _view(tally, produce_start, "producing")
        with Live(first, console=console, refresh_per_second=4) as live:
            sent = 0
            next_view = 0.0
            for i in range(n):
                for task, items in streams:
                    item = items[i]
                    producer.send(s.topic(task.input_topic), key=item.id.encode(),
                                  value=encode(item))
                    tally.produced.add(item.id)
                    sent += 1
                    if time.monotonic() >= next_view:  # keep the view fresh, 4 times a second
                        _drain(consumer, roles, tally)
                        supervisor.poll()
                        live.update(_view(tally, produce_start, "producing"))
                        next_view = time.monotonic() + 0.25
                    delay = produce_start + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            producer.flush()
            producer.close()
            deadline = time.monotonic() + settle_s
            while tally.open_ids() and time.monotonic() < deadline:
                _drain(consumer, roles, tally)
                supervisor.poll()
                live.update(_view(tally, produce_start, "waiting for the last decisions"))
                time.sleep(0.2)
            live.update(_view(tally, produce_start, "done"))
        out_dir.mkdir(parents=True, exist_ok=True)
        page, figures = build_report(s, [t.name for t in tasks], out_dir,
                                     json_file=out_dir / "report.json")
    finally:
        consumer.close()
        if not keep_running:
            supervisor.shutdown()
            if broker is not None:
                broker.stop()
    by = list(tally.decided.values())
    return {
        "events": len(tally.produced),
        "decided_by_student": by.count("student"),
        "decided_by_teacher": len(by) - by.count("student"),
        "dead_lettered": tally.dead,
        "lost": len(tally.open_ids()),
        "model_versions": len(tally.promoted),
        "student_share_last_1000": tally.share(tally.recent),
        "seconds": round(time.monotonic() - started, 1),
        "topic_prefix": s.topic_prefix,
        "report": str(page),
        "share_by_version": {name: f.get("share_by_version") for name, f in figures.items()},
        "share_over_time": {name: f.get("share_over_time") for name, f in figures.items()},
    }
