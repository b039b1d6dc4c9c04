"""``distillery demo``: the whole loop on synthetic streams, under a topic prefix of its own.

It brings the system up with the ``oracle`` teacher (answers from each item's
``metadata.oracle_label``, at a notional price per call), produces the synthetic streams at a
steady rate, shows live progress, waits until every event is decided or dead-lettered,
writes the report and, unless asked to keep running, removes what it made: its topics and
consumer groups, its model versions and stores (the report and the logs stay).

The stream is paced by the loop, not by the clock: a task's stream goes on until its student
has decided events for ``after_student`` more events (or ``n`` events were produced), so
the demo shows the student taking over on a slow or busy machine as on a fast one — it only
takes longer. Nothing in it depends on how fast a refresh is.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console
from rich.live import Live
from rich.table import Table

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import DeadLetter, Decision, ModelAnnouncement
from schemas.serde import decode, encode
from workers.runtime.stack import children, prepare, remove_topics
from workers.runtime.supervisor import Supervisor


class DemoFigures(TypedDict):
    """What ``run_demo`` returns (and ``demo --json`` writes)."""

    events: int
    events_by_task: dict[str, int]
    decided_by_student: int
    decided_by_teacher: int
    dead_lettered: int
    lost: int
    model_versions: int
    promotions: list[str]
    student_share_last_1000: float
    seconds: float
    seconds_to_first_student_decision: float | None  # from the first event produced
    seconds_from_broker_to_first_student_decision: float | None  # from the broker up
    seconds_to_first_student_decision_by_task: dict[str, float | None]
    notional_cost_per_call: float
    topic_prefix: str
    cleaned_up: bool
    report: str
    share_by_version: dict[str, Any]
    share_over_time: dict[str, Any]


@dataclass(frozen=True)
class DemoPlan:
    """How much to produce: at most ``n`` events a task, and ``after_student`` more after
    the task's student decided its first event; ``rate`` events a second over all tasks."""

    n: int = 6000
    after_student: int = 1500
    rate: float = 100.0


@dataclass
class Tally:
    produced: set[str] = field(default_factory=set)
    decided: dict[str, str] = field(default_factory=dict)  # id -> decided_by (first decision)
    dead: int = 0
    dead_keys: set[str] = field(default_factory=set)
    promoted: list[str] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    first_student_at: dict[str, float] = field(default_factory=dict)  # task -> monotonic

    def observe(self, topic_role: str, value: bytes, key: bytes | None) -> None:
        if topic_role == "results":
            d = decode(value, Decision)
            if d.id not in self.decided:
                self.decided[d.id] = d.decided_by
                self.recent.append(d.decided_by)
                if d.decided_by == "student":
                    self.first_student_at.setdefault(d.task, time.monotonic())
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


def _demo_settings(settings: Settings, price: float) -> Settings:
    prefix = f"demo-{uuid.uuid4().hex[:6]}."
    return settings.model_copy(update={
        "topic_prefix": prefix, "teacher_kind": "oracle",
        "oracle_cost_per_call": price,
        "refresh_every_verdicts": min(settings.refresh_every_verdicts, 200),
        "refresh_every_minutes": min(settings.refresh_every_minutes, 1.0),
        # a simulated teacher: no budget should hold the demo back
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


def _since(start: float, at: float | None) -> str:
    return f"after {at - start:.0f} s" if at is not None else "not yet"


def _view(tally: Tally, started: float, phase: str, tasks: list[TaskConfig]) -> Table:
    elapsed = max(time.monotonic() - started, 1e-6)  # since the first event was produced
    table = Table("", "", title=f"distillery demo — {phase}")
    produced = len(tally.produced)
    table.add_row("events produced", f"{produced:,} ({produced / elapsed:,.0f}/s)")
    table.add_row("decided", f"{len(tally.decided):,}")
    table.add_row("decided by the student", f"{tally.share():.1%} overall, "
                  f"{tally.share(tally.recent):.1%} of the last {len(tally.recent)}")
    by_teacher = sum(1 for v in tally.decided.values() if v != "student")
    table.add_row("teacher decisions", f"{by_teacher:,}")
    for task in tasks:
        table.add_row(f"first student decision, {task.name}",
                      _since(started, tally.first_student_at.get(task.name)))
    shown = ("…, " if len(tally.promoted) > 4 else "") + ", ".join(tally.promoted[-4:])
    table.add_row("model versions", f"{len(tally.promoted)} promoted: {shown}"
                  if tally.promoted else "none yet (cold start)")
    table.add_row("dead letters", str(tally.dead))
    return table


class _Pacer:
    """Which task produces next: round robin over the tasks still going, at a fixed rate."""

    def __init__(self, tasks: list[TaskConfig], plan: DemoPlan) -> None:
        self.plan = plan
        self.count = {t.name: 0 for t in tasks}
        self.after = {t.name: 0 for t in tasks}  # produced since its first student decision

    def going(self, tally: Tally) -> list[str]:
        out = []
        for name, count in self.count.items():
            if count < self.plan.n and self.after[name] < self.plan.after_student:
                out.append(name)
        return out

    def produced(self, task: str, tally: Tally) -> None:
        self.count[task] += 1
        if task in tally.first_student_at:
            self.after[task] += 1


def _produce(s: Settings, tasks: list[TaskConfig], plan: DemoPlan, tally: Tally,
             consumer: Any, roles: dict[str, str], supervisor: Supervisor, live: Live,
             started: float) -> dict[str, int]:
    from kafka import KafkaProducer

    from workers.sim.synth import iter_items

    streams = {t.name: iter_items(t.name, plan.n, seed=1, drift_at=0.7) for t in tasks}
    topics = {t.name: s.topic(t.input_topic) for t in tasks}
    pacer = _Pacer(tasks, plan)
    producer = KafkaProducer(acks="all", linger_ms=5, **s.kafka_python_kwargs())
    sent, next_view = 0, 0.0
    try:
        while going := pacer.going(tally):
            for name in going:
                item = next(streams[name])
                producer.send(topics[name], key=item.id.encode(), value=encode(item))
                tally.produced.add(item.id)
                pacer.produced(name, tally)
                sent += 1
                if time.monotonic() >= next_view:  # keep the view fresh, 4 times a second
                    _drain(consumer, roles, tally)
                    supervisor.poll()
                    live.update(_view(tally, started, "producing", tasks))
                    next_view = time.monotonic() + 0.25
                delay = started + sent / plan.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        producer.flush()
    finally:
        producer.close()
    return pacer.count


def run_demo(settings: Settings, tasks: list[TaskConfig], plan: DemoPlan, out_dir: Path,
             keep_running: bool, console: Console, price: float = 0.001,
             settle_s: float = 240.0) -> DemoFigures:
    """Run the demo; returns its figures. ``price`` is the notional cost of a teacher call."""
    from workers.report.figures import build_report

    started = time.monotonic()
    s, broker = prepare(_demo_settings(settings, price), tasks)
    broker_up = time.monotonic()  # and its topics created
    home = s.state_dir / "demo" / s.topic_prefix.rstrip(".")  # everything the run writes
    logs = s.state_dir / "demo" / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # the last run's logs only
    s = s.model_copy(update={"state_dir": home, "registry_root": home / "registry"})
    supervisor = Supervisor(s, children(s, tasks, logs))
    supervisor.start()
    tally = Tally()
    consumer, roles = _consumer(s, tasks)
    produce_start = time.monotonic()
    cleaned = False
    try:
        with Live(_view(tally, produce_start, "starting", tasks), console=console,
                  refresh_per_second=4) as live:
            counts = _produce(s, tasks, plan, tally, consumer, roles, supervisor, live,
                              produce_start)
            deadline = time.monotonic() + settle_s
            while tally.open_ids() and time.monotonic() < deadline:
                _drain(consumer, roles, tally)
                supervisor.poll()
                live.update(_view(tally, produce_start, "waiting for the last decisions", tasks))
                time.sleep(0.2)
            live.update(_view(tally, produce_start, "done", tasks))
        out_dir.mkdir(parents=True, exist_ok=True)
        page, figures = build_report(s, [t.name for t in tasks], out_dir,
                                     json_file=out_dir / "report.json")
    finally:
        consumer.close()
        if not keep_running:
            supervisor.shutdown()
            cleaned = _clean_up(s, home)
            if broker is not None:
                broker.stop()
    firsts = {t.name: (round(tally.first_student_at[t.name] - produce_start, 1)
                       if t.name in tally.first_student_at else None) for t in tasks}
    known = [v for v in firsts.values() if v is not None]
    by = list(tally.decided.values())
    return DemoFigures(
        events=len(tally.produced), events_by_task=counts,
        decided_by_student=by.count("student"),
        decided_by_teacher=len(by) - by.count("student"),
        dead_lettered=tally.dead, lost=len(tally.open_ids()),
        model_versions=len(tally.promoted), promotions=list(tally.promoted),
        student_share_last_1000=tally.share(tally.recent),
        seconds=round(time.monotonic() - started, 1),
        seconds_to_first_student_decision=min(known) if known else None,
        seconds_from_broker_to_first_student_decision=(
            round(min(tally.first_student_at.values()) - broker_up, 1)
            if tally.first_student_at else None),
        seconds_to_first_student_decision_by_task=firsts,
        notional_cost_per_call=price, topic_prefix=s.topic_prefix, cleaned_up=cleaned,
        report=str(page),
        share_by_version={name: f.get("share_by_version") for name, f in figures.items()},
        share_over_time={name: f.get("share_over_time") for name, f in figures.items()},
    )


def _clean_up(settings: Settings, home: Path) -> bool:
    """Delete the run's topics and consumer groups, and its models and stores."""
    removed = remove_topics(settings)
    shutil.rmtree(home, ignore_errors=True)
    return removed
