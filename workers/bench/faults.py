"""``distillery bench faults``: the delivery guarantees under faults, as figures.

Every scenario runs real worker processes (``distillery worker ...``) against an embedded
broker of its own (it is stopped and started on purpose), each under its own topic prefix,
and counts, from the topics themselves:

- ``events``: inputs offered;
- ``lost``: inputs that have no outcome (a decision, a teacher request, a dead letter);
- ``duplicated``: extra outcomes for ids that already had one (at-least-once: expected
  after a crash, never wrong);
- ``dead_lettered``: inputs dead-lettered;
- ``recover_s``: from the end of the fault until every input had its outcome.

Scenarios (``SCENARIOS``): SIGKILL the classify worker three times mid-stream; stop the
broker for 10 s under the classify, teacher and trainer workers (and check the trainer's
store holds every verdict afterwards); the teacher API down for a while under load; the
teacher answering HTTP 500 to half the calls for a while; thirteen kinds of malformed input
(a 500 KB id and oversized metadata among them); six kinds of bad model
announcement; SIGKILL of the teacher, the refine and the trainer worker mid-stream; a
teacher answering HTTP 400 to everything for a while. Sizes are parameters so that tests run small
versions of the same code (``tests/workers/bench/test_faults.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distillery.settings import Settings, child_env, load_settings
from schemas.records import (
    DeadLetter,
    Decision,
    Feedback,
    ModerationItem,
    TeacherRequest,
    Ticket,
)
from schemas.serde import decode, encode
from streams.topics import create_topics

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ScenarioResult:
    name: str
    events: int
    lost: int
    duplicated: int
    dead_lettered: int
    recover_s: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the rig: a broker of its own, worker processes, topics ------------------------------
class Rig:
    """An embedded broker under a temporary folder, and the workers of one scenario."""

    def __init__(self, root: Path, progress: Progress) -> None:
        from workers.runtime.broker import EmbeddedBroker
        from workers.runtime.procs import free_port

        self.root = root
        self.progress = progress
        base = load_settings(state_dir=root / "broker", broker_port=free_port(),
                             broker_controller_port=free_port())
        self.broker = EmbeddedBroker(base)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.broker.start()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.broker.stop()

    def settings(self, name: str, **overrides: Any) -> Settings:
        """Settings for one scenario: its own prefix, registry and state, topics created."""
        folder = self.root / name
        s = load_settings(kafka_bootstrap=self.broker.bootstrap,
                          topic_prefix=f"f{uuid.uuid4().hex[:6]}.{name}.",
                          registry_root=folder / "registry", state_dir=folder / "state",
                          **overrides)
        create_topics(s)
        return s

    def worker(self, s: Settings, kind: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        from workers.runtime.procs import free_port

        log_file = s.state_dir.parent / f"{kind}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        defaults = {"DISTILLERY_WEB_PORT": str(free_port()), "DISTILLERY_METRICS_PORT": "0",
                    "DISTILLERY_BATCH_WITHIN_S": "0.05",
                    "DISTILLERY_REFRESH_EVERY_VERDICTS": "1000000",
                    "DISTILLERY_REFRESH_FIRST_VERDICTS": "1000000",
                    "DISTILLERY_REFRESH_EVERY_MINUTES": "1000",
                    "DISTILLERY_TEACHER_CALLS_PER_MINUTE": "1000000"}
        environment = child_env(s, **(defaults | env))
        with open(log_file, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", kind, *args],
                                    env=environment, cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc


def produce(s: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]],
            rate: float | None = None, pause: threading.Event | None = None) -> None:
    """Send ``items`` (key, value) to ``topic``, paced at ``rate`` a second if given."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", linger_ms=5, max_request_size=2 << 20,
                             **s.kafka_python_kwargs())
    started = time.monotonic()
    for i, (key, value) in enumerate(items):
        if pause is not None:
            pause.wait()
        if rate:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(s.topic(topic), key=key, value=value)
    producer.flush()
    producer.close()


def read(s: Settings, topic: str) -> list[Any]:
    from workers.trainer.consume import read_range

    return asyncio.run(read_range(s, [s.topic(topic)]))


def outcomes(s: Settings, task: str = "tickets", teacher_counts: bool = True
             ) -> tuple[Counter[str], Counter[str], dict[bytes | None, DeadLetter]]:
    """(decisions by id, non-audit teacher requests by id, dead letters by key)."""
    results = "tickets.routed" if task == "tickets" else f"{task}.decisions"
    decided = Counter(decode(m.value, Decision).id for m in read(s, results))
    deferred: Counter[str] = Counter()
    if teacher_counts:
        for m in read(s, f"{task}.teacher"):
            request = decode(m.value, TeacherRequest)
            if request.reason != "audit":
                deferred[request.id] += 1
    dead = {d.key: d for d in (decode(m.value, DeadLetter) for m in read(s, "deadletter"))}
    return decided, deferred, dead


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


def tickets(n: int, tag: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(f"{tag}{i}".encode(), encode(Ticket(
        id=f"{tag}{i}", subject="Parcel", body=f"my order {i} has not arrived yet",
        metadata={"oracle_label": "shipping"}))) for i in range(n)]


def requests(n: int, tag: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(f"{tag}{i}".encode(), encode(TeacherRequest(
        id=f"{tag}{i}", task="tickets", text=f"where is parcel <{tag}{i}>",
        reason="cold_start"))) for i in range(n)]


# --- scenarios ---------------------------------------------------------------------------
def sigkill_classify(rig: Rig, events: int = 50_000, rate: float = 1000.0,
                     kills: int = 3, busy_s: float = 3.0) -> ScenarioResult:
    """SIGKILL the classify worker ``kills`` times while ``events`` flow; it restarts.

    Each kill comes ``busy_s`` after the worker (re)started consuming (faust's "Ready" in
    its log), so it dies mid-batch, not while starting.
    """
    s = rig.settings("sigkill")
    items = tickets(events, "k")
    log_file = s.state_dir.parent / "classify.log"

    def ready_count() -> int:
        return log_file.read_text(errors="replace").count("[^Worker]: Ready") \
            if log_file.is_file() else 0

    worker = rig.worker(s, "classify", "--task", "tickets", DISTILLERY_BATCH_SIZE="64")
    producer = threading.Thread(target=produce, args=(s, "tickets", items, rate))
    producer.start()
    restarted_at, flowing = time.monotonic(), True
    for k in range(kills):
        starts = k + 1
        wait_until(lambda: ready_count() >= starts, 120, every_s=0.2)  # noqa: B023
        time.sleep(busy_s)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        flowing = producer.is_alive()
        rig.progress(f"sigkill: killed the classify worker ({k + 1}/{kills})")
        worker = rig.worker(s, "classify", "--task", "tickets", DISTILLERY_BATCH_SIZE="64")
        restarted_at = time.monotonic()
    producer.join()
    want = {k.decode() for k, _ in items if k}
    result = _account(s, "sigkill_classify_3x", want, restarted_at, timeout_s=300)
    result.detail["events_still_flowing_at_last_kill"] = flowing
    return result


def _account(s: Settings, name: str, want: set[str], fault_end: float, *, timeout_s: float,
             bad: int = 0, teacher_counts: bool = True, decided_only: bool = False,
             detail: dict[str, Any] | None = None) -> ScenarioResult:
    state: dict[str, Any] = {}

    def done() -> bool:
        decided, deferred, dead = outcomes(s, teacher_counts=teacher_counts)
        seen = set(decided) if decided_only else set(decided) | set(deferred)
        state.update(decided=decided, deferred=deferred, dead=dead, seen=seen)
        return want <= seen and len(dead) >= bad

    finished = wait_until(done, timeout_s, every_s=2.0)
    recover = time.monotonic() - fault_end
    decided, deferred = state["decided"], state["deferred"]
    counts = decided if decided_only else decided + deferred
    duplicated = sum(c - 1 for i, c in counts.items() if c > 1 and i in want)
    return ScenarioResult(name, len(want) + bad, len(want - state["seen"]), duplicated,
                          len(state["dead"]), round(recover, 1) if finished else -1.0,
                          detail or {})


def broker_stop(rig: Rig, events: int = 5000, stop_s: float = 10.0) -> ScenarioResult:
    """Stop the broker for ``stop_s`` under the classify, teacher and trainer workers."""
    s = rig.settings("brokerstop")
    env = {"DISTILLERY_TEACHER_KIND": "oracle"}
    workers = [rig.worker(s, kind, "--task", "tickets", **env)
               for kind in ("classify", "teacher", "trainer")]
    items = tickets(events, "b")
    producer = threading.Thread(target=produce, args=(s, "tickets", items[: events // 2],
                                                      events / 20))
    producer.start()
    # Stop the broker while work is in flight in every worker: once the teacher has
    # decided some of the first half and the trainer stored some verdicts.
    store = s.state_dir / "trainer" / f"{s.topic_prefix}tickets.sqlite"
    wait_until(lambda: len(_store_ids(store)) >= events // 20, 180, every_s=0.5)
    rig.progress(f"broker: stopping it for {stop_s:.0f}s")
    rig.broker.stop()
    time.sleep(stop_s)
    rig.broker.start()
    fault_end = time.monotonic()
    producer.join()
    produce(s, "tickets", items[events // 2:])
    want = {k.decode() for k, _ in items if k}
    result = _account(s, "broker_stop_10s", want, fault_end, timeout_s=300,
                      teacher_counts=False, decided_only=True)
    verdicts = _verdict_ids(s)
    complete = wait_until(lambda: verdicts <= _store_ids(store), 60)
    result.detail = {"trainer_store_complete": complete, "verdicts": len(verdicts),
                     "in_store": len(_store_ids(store)),
                     "workers_alive": all(p.poll() is None for p in workers)}
    return result


def _verdict_ids(s: Settings) -> set[str]:
    from schemas.records import TeacherVerdict

    return {decode(m.value, TeacherVerdict).id for m in read(s, "tickets.verdicts")}


def _store_ids(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {row[0] for row in db.execute("SELECT id FROM verdicts")}
        finally:
            db.close()
    except sqlite3.Error:
        return set()


@contextmanager
def _fake_teacher(default: Callable[[str, list[str]], Any] | None = None
                  ) -> Iterator[Any]:
    from workers.sim.fake_teacher import FakeTeacherServer

    with FakeTeacherServer(default) as server:
        yield server


def _teacher_env(server: Any) -> dict[str, str]:
    return {"DISTILLERY_TEACHER_KIND": "openai", "DISTILLERY_TEACHER_BASE_URL": server.base_url,
            "DISTILLERY_TEACHER_MODEL": "fake", "DISTILLERY_TEACHER_API_KEY": "sk-fake",
            "DISTILLERY_TEACHER_CONCURRENCY": "8", "DISTILLERY_TEACHER_TIMEOUT_S": "2",
            "DISTILLERY_TEACHER_BREAKER_RESET_S": "3", "DISTILLERY_TEACHER_BACKOFF_S": "0.2"}


def teacher_outage(rig: Rig, events: int = 3000, outage_s: float = 60.0,
                   rate: float = 50.0) -> ScenarioResult:
    """The teacher API drops every connection for ``outage_s`` while requests arrive."""
    s = rig.settings("outage")
    items = requests(events, "o")
    with _fake_teacher() as server:
        rig.worker(s, "teacher", "--task", "tickets", **_teacher_env(server))
        producer = threading.Thread(target=produce, args=(s, "tickets.teacher", items, rate))
        producer.start()
        time.sleep(min(5.0, events / rate / 3))
        rig.progress(f"teacher: down for {outage_s:.0f}s")
        server.outage(outage_s, mode="drop")
        time.sleep(outage_s)
        fault_end = time.monotonic()
        producer.join()
        want = {k.decode() for k, _ in items if k}
        return _account(s, "teacher_down_60s", want, fault_end, timeout_s=300,
                        teacher_counts=False, decided_only=True,
                        detail={"outage_s": outage_s})


def teacher_storm(rig: Rig, events: int = 3000, storm_s: float = 60.0,
                  share: float = 0.5) -> ScenarioResult:
    """The teacher answers HTTP 500 to ``share`` of the calls for ``storm_s``."""
    from workers.sim.fake_teacher import status

    s = rig.settings("storm")
    rng = random.Random(14)
    until = {"t": 0.0}  # the storm starts with the first call (not with a slow start-up)
    calls = Counter[str]()

    def default(item: str, labels: list[str]) -> Any:
        if not until["t"]:
            until["t"] = time.monotonic() + storm_s
        storming = time.monotonic() < until["t"]
        calls["storm" if storming else "calm"] += 1
        if storming and rng.random() < share:
            calls["500"] += 1
            return status(500)
        return labels[0]

    items = requests(events, "s")
    with _fake_teacher(default) as server:
        env = _teacher_env(server) | {"DISTILLERY_TEACHER_BREAKER_FAILURES": "1000"}
        rig.worker(s, "teacher", "--task", "tickets", **env)
        rig.progress(f"teacher: HTTP 500 to {share:.0%} of the calls for {storm_s:.0f}s "
                     "from the first call")
        produce(s, "tickets.teacher", items, rate=events / storm_s)
        deadline = time.monotonic() + 300  # the worker must have called by then
        while time.monotonic() < deadline and not (until["t"] and time.monotonic() >= until["t"]):
            time.sleep(0.1)
        fault_end = time.monotonic()
        want = {k.decode() for k, _ in items if k}
        return _account(s, "teacher_500_half_the_calls", want, fault_end, timeout_s=300,
                        teacher_counts=False, decided_only=True,
                        detail={"calls_in_storm": calls["storm"], "answered_500": calls["500"]})


def sigkill_teacher(rig: Rig, events: int = 3000, rate: float = 100.0,
                    busy_s: float = 5.0) -> ScenarioResult:
    """SIGKILL the teacher worker once while requests arrive; a new one takes over."""
    s = rig.settings("killteacher")
    items = requests(events, "t")
    with _fake_teacher() as server:
        env = _teacher_env(server)
        worker = rig.worker(s, "teacher", "--task", "tickets", **env)
        producer = threading.Thread(target=produce, args=(s, "tickets.teacher", items, rate))
        producer.start()
        wait_until(lambda: len(outcomes(s, teacher_counts=False)[0]) >= 20, 120, every_s=0.5)
        time.sleep(busy_s)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        rig.progress("teacher: SIGKILLed mid-stream; starting another")
        rig.worker(s, "teacher", "--task", "tickets", **env)
        fault_end = time.monotonic()
        producer.join()
        want = {k.decode() for k, _ in items if k}
        return _account(s, "sigkill_teacher", want, fault_end, timeout_s=300,
                        teacher_counts=False, decided_only=True,
                        detail={"calls": len(server.calls)})


def sigkill_refine(rig: Rig, events: int = 3000, rate: float = 200.0,
                   busy_s: float = 5.0) -> ScenarioResult:
    """SIGKILL the refine worker (tier 2, here with no model yet: it hands every request on
    to the teacher topic) once mid-stream; a new one takes over."""
    s = rig.settings("killrefine")
    items = [(k, v) for k, v in requests(events, "r")]
    worker = rig.worker(s, "refine", "--task", "tickets")
    producer = threading.Thread(target=produce, args=(s, "tickets.refine", items, rate))
    producer.start()
    wait_until(lambda: len(outcomes(s)[1]) >= 20, 180, every_s=0.5)
    time.sleep(busy_s)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    rig.progress("refine: SIGKILLed mid-stream; starting another")
    rig.worker(s, "refine", "--task", "tickets")
    fault_end = time.monotonic()
    producer.join()
    want = {k.decode() for k, _ in items if k}
    return _account(s, "sigkill_refine", want, fault_end, timeout_s=300)


def sigkill_trainer(rig: Rig, events: int = 3000, rate: float = 200.0) -> ScenarioResult:
    """SIGKILL the trainer while verdicts arrive; after a restart its store holds every one
    (``lost``: verdicts not in the store)."""
    from schemas.records import TeacherVerdict

    s = rig.settings("killtrainer")
    items: list[tuple[bytes | None, bytes | None]] = [
        (f"v{i}".encode(), encode(TeacherVerdict(
            id=f"v{i}", task="tickets", text=f"where is parcel {i}", label="shipping",
            teacher_id="oracle", reason="low_confidence"))) for i in range(events)]
    store = s.state_dir / "trainer" / f"{s.topic_prefix}tickets.sqlite"
    worker = rig.worker(s, "trainer", "--task", "tickets")
    producer = threading.Thread(target=produce, args=(s, "tickets.verdicts", items, rate))
    producer.start()
    wait_until(lambda: len(_store_ids(store)) >= events // 10, 180, every_s=0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    rig.progress("trainer: SIGKILLed mid-stream; starting another")
    rig.worker(s, "trainer", "--task", "tickets")
    fault_end = time.monotonic()
    producer.join()
    want = {k.decode() for k, _ in items if k}
    finished = wait_until(lambda: want <= _store_ids(store), 300, every_s=1.0)
    stored = _store_ids(store)
    return ScenarioResult("sigkill_trainer", events, len(want - stored), 0, 0,
                          round(time.monotonic() - fault_end, 1) if finished else -1.0,
                          {"in_store": len(stored)})


def teacher_rejects(rig: Rig, events: int = 300, refuse_s: float = 20.0) -> ScenarioResult:
    """The teacher answers HTTP 400 to everything for ``refuse_s``: the breaker opens after
    five refusals in a row and the rest waits for the fix (``dead_lettered``: those five
    minus the one that opened it)."""
    from workers.sim.fake_teacher import status

    s = rig.settings("reject400")
    fixed = {"at": time.monotonic() + 1e9}

    def default(item: str, labels: list[str]) -> Any:
        return labels[0] if time.monotonic() >= fixed["at"] else status(400)

    items = requests(events, "x")
    with _fake_teacher(default) as server:
        rig.worker(s, "teacher", "--task", "tickets", **_teacher_env(server))
        fixed["at"] = time.monotonic() + refuse_s
        produce(s, "tickets.teacher", items)
        time.sleep(max(0.0, fixed["at"] - time.monotonic()))
        fault_end = time.monotonic()
        want = {k.decode() for k, _ in items if k}
        state: dict[str, Any] = {}

        def settled() -> bool:
            decided, _, dead = outcomes(s, teacher_counts=False)
            state.update(decided=decided, dead=dead)
            return want <= set(decided) | {k.decode() for k in dead if k}

        finished = wait_until(settled, 300, every_s=2.0)
        decided, dead = state["decided"], state["dead"]
        return ScenarioResult(
            "teacher_400_to_everything", events,
            len(want - set(decided) - {k.decode() for k in dead if k}),
            sum(c - 1 for c in decided.values() if c > 1), len(dead),
            round(time.monotonic() - fault_end, 1) if finished else -1.0,
            {"refused_s": refuse_s, "calls": len(server.calls),
             "dead_letter_kinds": sorted({d.error_kind for d in dead.values()})})


def malformed_kinds(max_text_chars: int) -> list[tuple[str, bytes | None, str]]:
    """(key, value, expected error kind) for thirteen kinds of malformed input."""
    import io

    import fastavro

    from schemas.serde import SINGLE_OBJECT_MAGIC, schema_for

    def avro(record: dict[str, Any]) -> bytes:
        schema = schema_for("ticket")
        buffer = io.BytesIO()
        buffer.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
        fastavro.schemaless_writer(buffer, schema.parsed, record)
        return buffer.getvalue()

    base = {"id": "x", "created_at": 0, "subject": "s", "body": "b", "channel": None,
            "customer_tier": None, "metadata": {}}
    good = encode(Ticket(id="trunc", subject="Parcel", body="where is my parcel " * 4))
    utf8 = avro(base | {"id": "utf8", "body": "PLACEHOLDER"}).replace(
        b"PLACEHOLDER", b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5")
    return [
        ("bytes", b"\x00\x01 definitely not avro", "undecodable"),
        ("schema", encode(Feedback(id="schema", task="tickets", label="billing")),
         "undecodable"),
        ("trunc", good[: len(good) // 2], "undecodable"),
        ("empty", b"", "empty"),
        ("tombstone", None, "empty"),
        ("huge", b"\xc3\x01" + b"\x00" * (1_048_400 - 2), "undecodable"),  # near the limit
        ("utf8", utf8, "undecodable"),
        ("noid", avro(base | {"id": ""}), "invalid"),
        ("task", encode(ModerationItem(id="task", text="you are awful")), "undecodable"),
        ("long", encode(Ticket(id="long", subject="s", body="x" * (max_text_chars + 10))),
         "oversized"),
        ("blank", avro(base | {"id": "blank", "subject": " ", "body": "\n"}), "invalid"),
        # poison events: their decision would not fit a producer request
        ("poison-id", avro(base | {"id": "p" * 500_000}), "oversized"),
        ("poison-meta", avro(base | {"id": "poison-meta", "metadata": {
            f"k{i}": "v" * 2000 for i in range(200)}}), "oversized"),
    ]


def malformed_input(rig: Rig, good_between: int = 1) -> ScenarioResult:
    """Each kind of malformed input, a good event after each: all dead-lettered with their
    reason, the worker alive, every good event decided."""
    s = rig.settings("malformed")
    kinds = malformed_kinds(2000)
    worker = rig.worker(s, "classify", "--task", "tickets", DISTILLERY_MAX_TEXT_CHARS="2000")
    items: list[tuple[bytes | None, bytes | None]] = []
    good: set[str] = set()
    for n, (key, value, _) in enumerate(kinds):
        items.append((key.encode(), value))
        for g in range(good_between):
            item_id = f"good{n}-{g}"
            good.add(item_id)
            items.append((item_id.encode(), encode(Ticket(id=item_id, subject="Parcel",
                                                          body="my parcel is late"))))
    started = time.monotonic()
    produce(s, "tickets", items)
    result = _account(s, f"malformed_input_{len(kinds)}_kinds", good, started, timeout_s=180,
                      bad=len(kinds))
    _, _, dead = outcomes(s)
    wrong = {key: (dead[key.encode()].error_kind if key.encode() in dead else "missing")
             for key, _, kind in kinds
             if key.encode() not in dead or dead[key.encode()].error_kind != kind}
    result.events = len(items)
    result.lost += len(wrong)
    result.detail = {"kinds": len(kinds), "wrong_or_missing": wrong,
                     "worker_alive": worker.poll() is None,
                     "largest_dead_letter_bytes": max(len(encode(d)) for d in dead.values())
                     if dead else 0}
    return result


def bad_models(rig: Rig) -> ScenarioResult:
    """Six kinds of bad announcement after a good one: each refused and counted, the good
    version still serving (read from the worker's /metrics)."""
    import httpx

    from models.pipeline import publish_and_promote, train_version
    from streams.announce import announce_manifest, publish_announcement
    from workers.runtime.procs import free_port
    from workers.sim.synth import generate, labels_of

    s = rig.settings("models", student_buckets=1 << 14)
    from distillery.tasks import TICKETS

    items = generate("tickets", 1500, seed=3)
    texts = [item.text_of(TICKETS.text_fields) for item in items]
    result = train_version(texts, labels_of(items), task=TICKETS, settings=s)
    manifest, _ = publish_and_promote(result, task=TICKETS, settings=s, force=True)
    announce_manifest(s, manifest)
    port = free_port()
    worker = rig.worker(s, "classify", "--task", "tickets", DISTILLERY_WEB_PORT=str(port))

    def metrics() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    def serving(version: str) -> bool:
        return f'version="{version}"}} 1.0' in metrics()

    wait_until(lambda: serving(manifest.version), 120)
    bad = _bad_announcements(s, manifest, Path(tempfile.mkdtemp(dir=rig.root)))
    started = time.monotonic()
    for announcement in bad:
        publish_announcement(s, announcement)

    def rejected() -> int:
        for line in metrics().splitlines():
            if line.startswith("distillery_model_rejected_total{"):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    wait_until(lambda: rejected() >= len(bad), 120)
    count, still = rejected(), serving(manifest.version)
    return ScenarioResult("bad_model_announcements_6_kinds", len(bad), len(bad) - count, 0,
                          0, round(time.monotonic() - started, 1),
                          {"refused_and_counted": count, "old_version_still_serving": still,
                           "worker_alive": worker.poll() is None})


def _bad_announcements(s: Settings, manifest: Any, outside: Path) -> list[Any]:
    """Wrong sha256, missing file, other labels, wrong output name, wrong dtype, outside."""
    import onnx
    from onnx import TensorProto, helper

    from streams.announce import announcement_for

    def variant(version: str, change: Callable[[Any], None]) -> Any:
        folder = manifest.directory.parent / version
        shutil.copytree(manifest.directory, folder)
        model = onnx.load(str(folder / "model.onnx"))
        change(model)
        data = model.SerializeToString()
        (folder / "model.onnx").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        meta = json.loads((folder / "manifest.json").read_text())
        meta.update(sha256=sha, version=version)
        (folder / "manifest.json").write_text(json.dumps(meta))
        return announcement_for("tickets", version, folder, sha, manifest.labels, {})

    def rename_output(model: Any) -> None:
        old = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = ["renamed" if o == old else o for o in node.output]
        model.graph.output[0].name = "renamed"

    def double_output(model: Any) -> None:
        old = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [f"{old}_f" if o == old else o for o in node.output]
        model.graph.node.append(helper.make_node("Cast", [f"{old}_f"], [old],
                                                 to=TensorProto.DOUBLE))
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE

    shutil.copytree(manifest.directory, outside / "v0001")
    labels = list(manifest.labels)
    return [
        announcement_for("tickets", "v9001", manifest.directory, "0" * 64, labels, {}),
        announcement_for("tickets", "v9002", manifest.directory.parent / "v9002",
                         manifest.sha256, labels, {}),
        announcement_for("tickets", "v9003", manifest.directory, manifest.sha256,
                         labels[1:] + labels[:1], {}),
        variant("v9004", rename_output),
        variant("v9005", double_output),
        announcement_for("tickets", "v9006", outside / "v0001", manifest.sha256, labels, {}),
    ]


SCENARIOS: dict[str, Callable[[Rig], ScenarioResult]] = {
    "sigkill": sigkill_classify,
    "broker": broker_stop,
    "teacher-down": teacher_outage,
    "teacher-500": teacher_storm,
    "malformed": malformed_input,
    "models": bad_models,
    "sigkill-teacher": sigkill_teacher,
    "sigkill-refine": sigkill_refine,
    "sigkill-trainer": sigkill_trainer,
    "teacher-400": teacher_rejects,
}


def medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per scenario over several runs: the median of each figure, the worst
    ``lost``; a run that did not recover (``recover_s`` -1) makes the row's -1.

    >>> medians([[{"name": "a", "events": 10, "lost": 0, "duplicated": 1,
    ...            "dead_lettered": 0, "recover_s": 2.0}],
    ...          [{"name": "a", "events": 10, "lost": 1, "duplicated": 5,
    ...            "dead_lettered": 0, "recover_s": 4.0}],
    ...          [{"name": "a", "events": 10, "lost": 0, "duplicated": 3,
    ...            "dead_lettered": 0, "recover_s": 3.0}]])[0]["duplicated"]
    3
    """
    from statistics import median

    rows: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for row in run:
            rows.setdefault(row["name"], []).append(row)
    out = []
    for name, found in rows.items():
        recover = [r["recover_s"] for r in found]
        out.append({"name": name, "runs": len(found),
                    **{k: median(r[k] for r in found)
                       for k in ("events", "duplicated", "dead_lettered")},
                    "lost": max(r["lost"] for r in found),
                    "recover_s": -1.0 if min(recover) < 0 else median(recover)})
    return out


def run_faults(names: list[str] | None = None, progress: Progress = print,
               logs: Path | None = None) -> dict[str, Any]:
    """Run the scenarios (all by default) on a broker of their own; the figures as a dict.

    ``logs``: a folder to copy every worker's log into (``<scenario>/<worker>.log``).
    """
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="distillery-faults-") as tmp:
        rig = Rig(Path(tmp), progress)
        rig.start()
        try:
            for name in names or list(SCENARIOS):
                progress(f"scenario {name} ...")
                started = time.monotonic()
                result = SCENARIOS[name](rig)
                result.detail["seconds"] = round(time.monotonic() - started, 1)
                progress(f"  {result.as_dict()}")
                out.append(result.as_dict())
        finally:
            rig.close()
            if logs is not None:
                for log_file in Path(tmp).glob("*/*.log"):
                    target = logs / log_file.parent.name / log_file.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(log_file, target)
    return {"scenarios": out}
