"""The classify worker with a real student: routing by confidence and stakes, audit, hot swap.

The task is a third one, configured in a TOML file (no code): ten CLINC150 intents, two of
them critical. Out-of-scope queries make the low-confidence cases.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import get_task
from models.pipeline import publish_and_promote, train_version
from models.registry import Registry
from schemas.records import TextItem
from schemas.serde import encode
from streams.announce import announcement_for, publish_announcement
from streams.decode import Item, RawEvent
from streams.routing import Policy, audit_selected, route_batch
from tests.streams.kit import collect, start_classify, stop
from workers.runtime.procs import free_port

INTENTS = ["balance", "bill_due", "card_declined", "lost_luggage", "report_fraud",
           "pin_change", "freeze_account", "transfer", "interest_rate", "spending_history"]
CRITICAL = ["report_fraud", "freeze_account"]
AUDIT_RATE = 0.1


def _tasks_file(tmp_path: Path) -> Path:
    labels = ", ".join(
        f'{{ name = "{n}", critical = {"true" if n in CRITICAL else "false"} }}' for n in INTENTS
    )
    path = tmp_path / "tasks.toml"
    path.write_text(f'[tasks.intents]\nschema = "text"\ntiers = ["ngram"]\nlabels = [{labels}]\n',
                    encoding="utf-8")  # tier 1 alone: the worker under test, no refine worker
    return path


def _settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    from streams.topics import create_topics

    s = kafka_settings.model_copy(update={"tasks_file": _tasks_file(tmp_path),
                                          "student_buckets": 1 << 16, "audit_rate": AUDIT_RATE})
    create_topics(s)
    return s


def _data(clinc_dir: Path) -> dict[str, list[list[str]]]:
    return json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))


def _train(s: Settings, rows: list[list[str]], seed: int):
    task = get_task(s, "intents")
    result = train_version([t for t, _ in rows], [y for _, y in rows], task=task, settings=s,
                           seed=seed)
    manifest, decision = publish_and_promote(result, task=task, settings=s, force=True)
    return manifest


def _announce(s: Settings, manifest, sha256: str | None = None) -> None:
    publish_announcement(s, announcement_for(
        "intents", manifest.version, manifest.directory, sha256 or manifest.sha256,
        manifest.labels, manifest.metrics))


def _produce(s: Settings, items: list[TextItem], junk: list[tuple[bytes, bytes]] = ()) -> None:
    producer = KafkaProducer(acks="all", **s.kafka_python_kwargs())
    for item in items:
        producer.send(s.topic("intents"), key=item.id.encode(), value=encode(item))
    for key, value in junk:
        producer.send(s.topic("intents"), key=key, value=value)
    producer.flush()
    producer.close()


@pytest.mark.slow
def test_mixed_stream_routes_every_event_once_with_the_right_reason(
    kafka_settings: Settings, tmp_path: Path, clinc_dir: Path
) -> None:
    s = _settings(kafka_settings, tmp_path)
    data = _data(clinc_dir)
    manifest = _train(s, [r for r in data["train"] if r[1] in INTENTS], seed=0)
    _announce(s, manifest)
    items = [TextItem(id=f"in-{i}", text=t) for i, (t, y) in enumerate(data["test"])
             if y in INTENTS]
    items += [TextItem(id=f"oos-{i}", text=t) for i, (t, _) in enumerate(data["oos_test"][:80])]
    junk = [(b"junk-1", b"garbage"), (b"junk-2", b"")]
    _produce(s, items, junk)
    worker = start_classify(s, tmp_path / "worker.log", tasks=("intents",),
                            DISTILLERY_TASKS_FILE=str(s.tasks_file),
                            DISTILLERY_AUDIT_RATE=str(AUDIT_RATE))
    try:
        out = collect(s, "intents.decisions", "intents.teacher", {i.id for i in items},
                      len(junk), timeout_s=120)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    # What the same student and policy say, computed here without Kafka.
    student = Registry(s.registry_root).load_student("intents")
    task = get_task(s, "intents")
    raws = [RawEvent("t", 0, 0, None, None) for _ in items]
    expected = {
        r.item.record.id: r
        for r in route_batch(task, student,
                             [Item(i, i.text, raw) for i, raw in zip(items, raws, strict=True)],
                             Policy(AUDIT_RATE, s.critical_floor))
    }
    decided, requests = out["decision_counts"], out["request_counts"]
    reasons = {r.id: r.reason for r in out["requests"] if r.reason != "audit"}
    audits = {r.id for r in out["requests"] if r.reason == "audit"}
    for item in items:
        want = expected[item.id]
        if want.decision is not None:
            assert decided[item.id] == 1 and item.id not in reasons, item.id
            assert (item.id in audits) == audit_selected(item.id, AUDIT_RATE)
        else:
            assert decided[item.id] == 0 and requests[item.id] == 1, item.id
            assert reasons[item.id] == want.request.reason
    for d in out["decisions"]:
        assert d.decided_by == "student" and d.reason == "confident"
        assert d.model_version == manifest.version and d.label not in CRITICAL
    got_reasons = set(reasons.values())
    assert {"low_confidence", "critical"} <= got_reasons, got_reasons
    assert audits and len(out["decisions"]) > len(items) // 3
    assert sorted(d.key for d in out["dead"]) == [b"junk-1", b"junk-2"]


def _until_metric(port: int, line: str, timeout_s: float = 120) -> None:
    """Until the worker's /metrics has ``line`` (a swap or a refusal happened)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            text = ""
        if line in text.splitlines():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {line!r} in /metrics within {timeout_s:.0f}s:\n{text[-2000:]}")


@pytest.mark.slow
def test_hot_swap_mid_stream_loses_nothing_and_refuses_a_bad_model(
    kafka_settings: Settings, tmp_path: Path, clinc_dir: Path
) -> None:
    s = _settings(kafka_settings, tmp_path)
    data = _data(clinc_dir)
    rows = [r for r in data["train"] if r[1] in INTENTS]
    first = _train(s, rows, seed=0)
    second = _train(s, rows, seed=1)
    _announce(s, first)
    texts = [t for t, y in data["test"] if y in INTENTS]
    batch1 = [TextItem(id=f"a-{i}", text=t) for i, t in enumerate(texts)]
    batch2 = [TextItem(id=f"b-{i}", text=t) for i, t in enumerate(texts)]
    batch3 = [TextItem(id=f"c-{i}", text=t) for i, t in enumerate(texts)]
    port = free_port()
    worker = start_classify(s, tmp_path / "worker.log", tasks=("intents",),
                            DISTILLERY_TASKS_FILE=str(s.tasks_file),
                            DISTILLERY_WEB_PORT=str(port))
    try:
        _produce(s, batch1)
        collect(s, "intents.decisions", "intents.teacher", {i.id for i in batch1}, 0, 120)
        _announce(s, second, sha256="0" * 64)  # a checksum that does not match: refused
        _announce(s, second)  # the real one: swapped in between batches
        _until_metric(port, f'distillery_model_version_info{{task="intents",version='
                            f'"{second.version}"}} 1.0')
        _produce(s, batch2)
        collect(s, "intents.decisions", "intents.teacher", {i.id for i in batch2}, 0, 120)
        (first.directory / "model.onnx").write_bytes(b"truncated")  # corrupt on disk
        _announce(s, first)  # a rollback to a file that is now corrupt: refused
        _until_metric(port, 'distillery_model_rejected_total{task="intents"} 2.0')
        _produce(s, batch3)
        out = collect(s, "intents.decisions", "intents.teacher",
                      {i.id for i in batch1 + batch2 + batch3}, 0, 120)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    versions = {}
    for d in out["decisions"]:
        versions.setdefault(d.id[0], set()).add(d.model_version)
    assert versions["a"] == {first.version}
    assert versions["b"] == {second.version}
    assert versions["c"] == {second.version}  # the old model kept serving
    seen = set(out["decision_counts"]) | {r.id for r in out["requests"] if r.reason != "audit"}
    assert seen == {i.id for i in batch1 + batch2 + batch3}
    log = (tmp_path / "worker.log").read_text()
    assert log.count("refusing model") == 2


class _Fixed:
    """A student tier with fixed probabilities and a manifest-like policy (no ONNX)."""

    version = "v0009"

    def __init__(self, probs: list[list[float]], floors: dict[str, float] | None) -> None:
        from models.policy import DecisionPolicy

        self.labels = ["balance", "transfer", "report_fraud", "freeze_account"]
        self.probs = probs
        self.policy = DecisionPolicy(tuple(self.labels), (0.6, 0.6, 0.6, 0.6), floors or {})
        self.fallbacks: list[float] = []

    def predict_many(self, texts: list[str]) -> SimpleNamespace:
        return SimpleNamespace(probs=self.probs[: len(texts)])

    def routing_policy(self, fallback_floor: float) -> Any:
        self.fallbacks.append(fallback_floor)
        if self.policy.floors:
            return self.policy
        return self.policy.with_floors({"report_fraud": fallback_floor,
                                        "freeze_account": fallback_floor})


def test_the_manifest_floors_route_each_critical_label_by_its_own_floor() -> None:
    from distillery.tasks import LabelSpec, TaskConfig

    task = TaskConfig(name="intents", labels=[LabelSpec(name=n, critical=n in CRITICAL)
                                              for n in ["balance", "transfer", "report_fraud",
                                                        "freeze_account"]])
    probs = [[0.85, 0.05, 0.06, 0.04],  # report_fraud 0.06: over its floor 0.05
             [0.85, 0.05, 0.04, 0.06],  # freeze_account 0.06: under its floor 0.1
             [0.50, 0.42, 0.04, 0.04]]  # low confidence
    items = [Item(TextItem(id=f"x{i}", text="t"), "t", RawEvent("t", 0, i, None, None))
             for i in range(3)]
    calibrated = _Fixed(probs, {"report_fraud": 0.05, "freeze_account": 0.1})
    routed = route_batch(task, calibrated, items, Policy(0.0, 0.2))
    assert [r.request.reason if r.request else "confident" for r in routed] == [
        "critical", "confident", "low_confidence"]
    old = _Fixed(probs, None)  # an old manifest: one floor, the setting, for every label
    routed = route_batch(task, old, items, Policy(0.0, 0.05))
    assert [r.request.reason if r.request else "confident" for r in routed] == [
        "critical", "critical", "low_confidence"]
    assert old.fallbacks == [0.05]
