"""The trainer: gated refreshes, feedback over verdicts, a store rebuilt by replay, backtest."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from models.registry import Registry
from schemas.records import Feedback, TeacherVerdict
from schemas.serde import encode
from workers.trainer.consume import rebuild
from workers.trainer.refresh import RefreshConfig, build_dataset, holdout_size, refresh_once
from workers.trainer.store import Example, TrainingStore
from workers.trainer.worker import TrainerWorker

INTENTS = ["balance", "bill_due", "card_declined", "lost_luggage", "report_fraud",
           "pin_change", "freeze_account", "transfer"]
CRITICAL = "report_fraud"


@pytest.fixture(scope="module")
def clinc(clinc_dir: Path) -> dict[str, list[list[str]]]:
    return json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))


def _task() -> TaskConfig:
    return TaskConfig(name="intents", labels=[LabelSpec(name=n, critical=n == CRITICAL)
                                              for n in INTENTS])


def _verdicts(rows: list[list[str]], prefix: str, relabel: dict[str, str] | None = None,
              reason: str = "low_confidence") -> list[TeacherVerdict]:
    relabel = relabel or {}
    return [TeacherVerdict(id=f"{prefix}{i}", task="intents", text=t, label=relabel.get(y, y),
                           teacher_id="test", reason=reason)
            for i, (t, y) in enumerate(rows) if y in INTENTS]


def _store(tmp_path: Path, name: str, verdicts: list[TeacherVerdict],
           feedback: list[Feedback] = ()) -> TrainingStore:
    store = TrainingStore(tmp_path / f"{name}.sqlite")
    for v in verdicts:
        store.add_verdict(v)
    for f in feedback:
        store.add_feedback(f)
    store.commit()
    return store


def test_refresh_promotes_a_better_student_and_rejects_a_critical_regression(
    clinc: dict, tmp_path: Path
) -> None:
    settings = Settings(registry_root=tmp_path / "registry", student_buckets=1 << 16)
    task = _task()
    rows = [r for r in clinc["train"] if r[1] in INTENTS]
    random.Random(0).shuffle(rows)
    cfg = RefreshConfig(min_calibration=10_000)  # calibrate on the holdout here
    announced: list[str] = []
    weak = _store(tmp_path, "weak", _verdicts(rows[:80], "w"))
    first = refresh_once(settings, task, [], *weak.examples(), cfg,
                         announce=lambda m: announced.append(m.version))
    assert first.promoted, first.reason
    better = _store(tmp_path, "better", _verdicts(rows, "b"))
    second = refresh_once(settings, task, [], *better.examples(), cfg,
                          announce=lambda m: announced.append(m.version))
    assert second.promoted, second.reason
    # The teacher now mislabels every report_fraud item as card_declined: the critical
    # slice's recall collapses on the (correct) time-ordered holdout, so the gate says no.
    tail = rows[int(len(rows) * 0.85):]
    poisoned = _verdicts(rows[: int(len(rows) * 0.85)], "p", {CRITICAL: "card_declined"})
    poisoned += _verdicts(tail, "q")
    bad = _store(tmp_path, "bad", poisoned)
    # a loose overall tolerance, so that only the critical slice can stop this version
    lenient = settings.model_copy(update={"gate_tolerance": 0.5})
    third = refresh_once(lenient, task, [], *bad.examples(), cfg,
                         announce=lambda m: announced.append(m.version))
    assert not third.promoted and CRITICAL in third.reason, third.reason
    assert announced == [first.version, second.version]


def test_feedback_overrides_and_counts_contradicted_verdicts(tmp_path: Path) -> None:
    verdicts = [TeacherVerdict(id=f"v{i}", task="intents", text=f"text {i}", label="balance",
                               teacher_id="t", reason="low_confidence") for i in range(5)]
    feedback = [Feedback(id="v1", task="intents", label="transfer"),
                Feedback(id="v2", task="intents", label="balance"),
                Feedback(id="other", task="intents", label="transfer")]
    store = _store(tmp_path, "fb", verdicts, feedback)
    examples, contradicted = store.examples()
    assert contradicted == 1
    by_id = {e.id: e for e in examples}
    assert by_id["v1"].label == "transfer" and by_id["v1"].gold
    assert by_id["v2"].gold and not by_id["v0"].gold
    assert len(examples) == 5  # feedback without a verdict has no text to train on


@pytest.mark.kafka
def test_replaying_the_topics_rebuilds_the_live_store(kafka_settings: Settings,
                                                      tmp_path: Path, clinc: dict) -> None:
    task = TaskConfig(name="tickets", schema="ticket", labels=_task().labels)
    s = kafka_settings
    rows = [r for r in clinc["train"] if r[1] in INTENTS][:300]
    verdicts = _verdicts(rows, "r")
    verdicts = [v.model_copy(update={"task": "tickets"}) for v in verdicts]
    redelivered = [v.model_copy(update={"label": "transfer"}) for v in verdicts[:20]]
    feedback = [Feedback(id=v.id, task="tickets", label="balance") for v in verdicts[50:60]]
    producer = KafkaProducer(acks="all", **s.kafka_python_kwargs())
    for v in verdicts + redelivered:
        producer.send(s.topic("tickets.verdicts"), key=v.id.encode(), value=encode(v))
    producer.send(s.topic("tickets.verdicts"), key=b"junk", value=b"not avro")
    for f in feedback:
        producer.send(s.topic("tickets.feedback"), key=f.id.encode(), value=encode(f))
    producer.flush()
    producer.close()

    refreshes: list[int] = []
    live = TrainerWorker(s.model_copy(update={"refresh_every_verdicts": 100}), task,
                         lambda store, confirm: refreshes.append(store.counts()["verdicts"]) or {})

    async def run_live() -> None:
        runner = asyncio.create_task(live.run())
        for _ in range(120):
            await asyncio.sleep(0.5)
            if live.store.counts() == {"verdicts": 300, "feedback": 10, "refreshes": 0,
                                       "promotions": 0} and live.new_verdicts == 0:
                break
        await asyncio.sleep(1.0)
        live.stop()
        await runner

    live_rows = None

    async def snapshot_live() -> None:
        nonlocal live_rows
        await run_live()

    asyncio.run(snapshot_live())
    live_store = TrainingStore(live.store.path)
    live_rows = list(live_store.snapshot())
    assert refreshes, "a refresh was triggered every 100 new verdicts"
    rebuilt = TrainingStore(tmp_path / "rebuilt.sqlite")
    asyncio.run(rebuild(s, task, rebuilt))
    assert list(rebuilt.snapshot()) == live_rows
    assert len(live_rows) == 300
    labels = {i: y for i, _, y in live_rows}
    assert labels["r0"] == "transfer"  # the redelivered (later) verdict wins
    assert all(labels[v.id] == "balance" for v in verdicts[50:60])  # feedback wins
    assert rebuilt.examples()[1] == live_store.examples()[1]


def _clinc_history(clinc: dict) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The README's CLINC150 history: the in-scope train split shuffled with seed 0, the
    first 5 examples of each intent as the bootstrap, the other 14,250 as the stream (ids
    ``c{i}`` by position in the shuffled list; gold is the recorded teacher)."""
    rows = clinc["train"][:]
    random.Random(0).shuffle(rows)
    seen: dict[str, int] = {}
    boot, stream = [], []
    for i, (text, label) in enumerate(rows):
        if seen.get(label, 0) < 5:
            seen[label] = seen.get(label, 0) + 1
            boot.append({"text": text, "label": label})
        else:
            stream.append({"id": f"c{i}", "text": text, "label": label})
    return boot, stream


@pytest.mark.slow
@pytest.mark.parametrize("critical", ["", "report_fraud,freeze_account"],
                         ids=["plain", "rare-critical"])
def test_clinc150_backtest_meets_the_targets_under_the_default_settings(
    clinc: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, critical: str
) -> None:
    """Default settings (2^16 buckets only to keep it fast; README gives the 2^18 figures):
    teacher calls <= 25% (<= 35% with two rare critical intents) at accuracy >= 0.95, and
    each critical intent caught >= 95% of the time."""
    from workers.cli.main import main

    boot, stream = _clinc_history(clinc)
    assert (len(boot), len(stream)) == (750, 14_250)
    (tmp_path / "boot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in boot))
    (tmp_path / "stream.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stream))
    monkeypatch.setenv("DISTILLERY_STUDENT_BUCKETS", "65536")
    out = tmp_path / "backtest.json"
    args = ["backtest", "--data", str(tmp_path / "stream.jsonl"), "--bootstrap",
            str(tmp_path / "boot.jsonl"), "--id-col", "id", "--teacher-col", "label",
            "--gold-col", "label", "--tiers", "ngram", "--json", str(out)]
    with pytest.raises(SystemExit) as done:
        main(args + (["--critical", critical] if critical else []))
    assert done.value.code in (0, None)
    f = json.loads(out.read_text())
    print({k: f[k] for k in ("teacher_call_fraction", "coverage", "decided_accuracy",
                             "accuracy", "catch_rate", "first_served_at")})
    assert f["n"] == 14_250
    assert set(f["discounted_accuracy"]) == {"0.05", "0.1", "0.2", "0.3"}
    assert f["accuracy"] >= 0.95
    assert f["teacher_call_fraction"] <= (0.35 if critical else 0.25)
    assert f["teacher_call_fraction"] >= 1 - f["coverage"]
    for label in filter(None, critical.split(",")):
        assert f["catch_rate"][label] >= 0.95, label
    chosen = [p for p in f["curve"] if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["target"] == f["accuracy_target"]
    assert chosen[0]["teacher_call_fraction"] == pytest.approx(f["teacher_call_fraction"])


@pytest.mark.kafka
@pytest.mark.slow
def test_clinc150_backtest_via_kafka_agrees_with_the_in_process_run(
    clinc: dict, kafka_bootstrap: str, tmp_path: Path
) -> None:
    from distillery.settings import load_settings
    from tests.histories import seed_and_stream
    from workers.offline.backtest import BacktestConfig, run_backtest
    from workers.offline.via_kafka import run_via_kafka

    boot, stream = seed_and_stream(clinc["train"], prefix="s")
    s = load_settings(kafka_bootstrap=kafka_bootstrap, student_buckets=1 << 16,
                      state_dir=tmp_path / "state", web_port=6377)
    cfg = BacktestConfig(audit_rate=s.audit_rate, critical_floor=s.critical_floor)
    local = run_backtest(s, stream, boot, cfg)
    # 100 events/s: a refresh (a few seconds of training) lags the stream by a few hundred
    # events, as it would in production; the in-process run swaps models instantly.
    kafka = run_via_kafka(s, stream, boot, cfg, None, rate=100.0, progress=lambda m: None)
    keys = ("teacher_call_fraction", "student_share", "accuracy")
    print("in-process", {k: round(local[k], 4) for k in keys})
    print("via-kafka ", {k: round(kafka[k], 4) for k in keys})
    assert kafka["n"] == local["n"] == 14_250
    # How far the teacher-call share lags the in-process run depends on how long a refresh
    # takes against the stream's pace (1 to 6 points here): a figure, not a pass mark. What
    # must hold whatever the machine's speed: every event decided, the accuracy no worse
    # than in-process (beyond noise), and the student deciding most of the stream. A slower
    # refresh sends more to the teacher, which only raises the accuracy (CI once measured
    # 0.969 through Kafka with 25.9% calls against 0.948 with 20.4% in-process), so the
    # bound is one-sided.
    # No absolute floor above the in-process figure either: the in-process run itself
    # measures 0.948, and a fast machine's run through Kafka comes close to it (CI: 0.944);
    # the floor is the accuracy the system is calibrated to.
    assert kafka["accuracy"] >= local["accuracy"] - 0.02
    assert kafka["accuracy"] >= s.accuracy_target
    assert kafka["student_share"] >= 0.6


def _example(i: int, label: str, reason: str = "low_confidence") -> Example:
    return Example(f"e{i}", f"text {i}", label, "verdict", reason, False, i)


def test_held_out_verdicts_include_every_audit_weighted_for_the_accepted_region() -> None:
    examples = [_example(i, "balance", "audit" if i % 10 == 0 else "low_confidence")
                for i in range(200)]
    cfg = RefreshConfig(audit_rate=0.02, min_calibration=50)
    data = build_dataset([("boot", "balance"), ("boot 2", "transfer")], examples, _task(), cfg)
    window = examples[-holdout_size(200, cfg):]  # the newest 50
    window_audits = sum(e.reason == "audit" for e in window)
    held_audits = 20  # every audit, old or recent, is held out
    assert data.sample is not None and data.sample["audits"] == held_audits
    assert len(data.holdout) == len(window) + held_audits - window_audits
    audit_w = [w for w, (t, _) in zip(data.weights, data.holdout, strict=True)
               if int(t.split()[1]) % 10 == 0]
    assert audit_w == [pytest.approx(window_audits / 0.02 / held_audits)] * held_audits
    assert sum(audit_w) == pytest.approx(window_audits / 0.02)
    trained = {t for t, _ in data.train}
    assert not trained & {t for t, _ in data.holdout}


def test_a_student_without_a_critical_label_does_not_serve(clinc: dict, tmp_path: Path) -> None:
    from models.pipeline import publish_and_promote, train_version

    s = Settings(registry_root=tmp_path / "registry", student_buckets=1 << 16)
    task = _task()
    rows = [r for r in clinc["train"] if r[1] in INTENTS and r[1] != CRITICAL]
    result = train_version([t for t, _ in rows], [y for _, y in rows], task=task, settings=s)
    manifest, decision = publish_and_promote(result, task=task, settings=s)
    assert not decision.passed
    assert f"{CRITICAL} has 0" in decision.reason, decision.reason
    assert Registry(s.registry_root).serving(task.name) is None
    assert manifest.data["gate"]["passed"] is False


def test_the_trainer_refreshes_early_after_a_cold_start(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "state", refresh_first_verdicts=50,
                 refresh_every_verdicts=500, refresh_every_minutes=1e6)
    worker = TrainerWorker(s, _task(), lambda store, confirm: {})
    due_at = []
    for i in range(1, 1801):
        worker.store.add_verdict(TeacherVerdict(id=f"v{i}", task="intents", text=f"t{i}",
                                                label="balance", teacher_id="t",
                                                reason="cold_start"))
        worker.new_verdicts += 1
        if worker.due():
            due_at.append(i)
            worker.run_refresh()
    assert due_at == [50, 100, 200, 400, 800, 1300, 1800]


def test_the_trainer_prunes_old_versions_after_each_refresh(
    clinc: dict, kafka_settings: Settings, tmp_path: Path
) -> None:
    from workers.trainer.worker import store_refresher

    settings = kafka_settings.model_copy(update={"student_buckets": 1 << 16,
                                                 "registry_keep": 1})
    task = _task()
    rows = [r for r in clinc["train"] if r[1] in INTENTS]
    random.Random(1).shuffle(rows)
    refresh = store_refresher(settings, task, [])
    registry = Registry.from_settings(settings)
    outcomes = []
    for round_ in range(4):  # more data each time: each version is at least as good
        store = _store(tmp_path, f"r{round_}", _verdicts(rows[: 200 * (round_ + 1)], "p"))
        outcomes.append(refresh(store, lambda: True))
        store.close()
    versions = registry.versions(task.name)
    assert len(outcomes) == 4 and len(versions) <= 3, versions  # serving, previous, newest 1
    serving = registry.state(task.name).get("serving")
    assert serving in versions and versions[-1] == outcomes[-1]["version"]


def test_replay_to_keeps_the_routing_policy(kafka_settings: Settings, clinc: dict,
                                            tmp_path: Path) -> None:
    """A backfill decides only what the policy lets the student decide; critical and
    low-confidence items go to the teacher topic, as on the live stream."""
    from schemas.records import Decision, TeacherRequest, Ticket
    from schemas.serde import decode
    from workers.trainer.consume import read_range
    from workers.trainer.replay import rescore

    task = TaskConfig(name="tickets", schema="ticket", labels=_task().labels)
    s = kafka_settings.model_copy(update={"student_buckets": 1 << 16})
    rows = [r for r in clinc["train"] if r[1] in INTENTS]
    random.Random(2).shuffle(rows)
    store = _store(tmp_path, "boot", _verdicts(rows[:400], "b"))
    outcome = refresh_once(s, task, [], *store.examples(), RefreshConfig(min_calibration=10_000))
    assert outcome.promoted, outcome.reason
    inputs = [r for r in clinc["test"] if r[1] in INTENTS][:120]
    producer = KafkaProducer(acks="all", **s.kafka_python_kwargs())
    for i, (text, _) in enumerate(inputs):
        producer.send(s.topic("tickets"), key=f"in{i}".encode(),
                      value=encode(Ticket(id=f"in{i}", body=text)))
    producer.flush()
    producer.close()
    done = rescore(s, task, s.topic("tickets"), s.topic("tickets.routed"), None, None)
    decisions = [decode(m.value, Decision)
                 for m in asyncio.run(read_range(s, [s.topic("tickets.routed")]))]
    requests = [decode(m.value, TeacherRequest)
                for m in asyncio.run(read_range(s, [s.topic("tickets.teacher")]))]
    assert done["scored"] == len(decisions) and done["to_teacher"] == len(requests)
    assert len(decisions) + len(requests) == len(inputs)
    assert decisions and all(d.reason == "confident" for d in decisions)
    assert requests and all(r.reason in ("critical", "low_confidence") for r in requests)
    assert all(d.label != CRITICAL for d in decisions)  # a critical label is never decided
