"""The trainer's tier 2: a refresh trains both tiers from the same verdicts, keeps the
embeddings in the store (a second refresh encodes only what is new), and weighs the refine
worker's audits as tier-2 audits. No Kafka: announcements are collected."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from models.embed.encoder import TextEncoder
from models.embed.export import ensure_encoder
from models.registry import Manifest, Registry
from models.stage import registry_key
from schemas.records import TeacherVerdict
from workers.trainer.embeddings import StoredEmbeddings
from workers.trainer.refresh import RefreshConfig, build_dataset, refresh_once
from workers.trainer.store import Example, TrainingStore

CRITICAL = ("report_fraud",)


def _intents(raw: dict) -> list[str]:
    """40 intents (the critical one among them): enough for tier 1 to leave items to tier 2."""
    names = sorted({y for _, y in raw["train"]})
    return sorted(set(names[::4][:39]) | set(CRITICAL))


def _task(intents: list[str]) -> TaskConfig:
    return TaskConfig(name="intents", tiers=["ngram", "embed"],
                      labels=[LabelSpec(name=n, critical=n in CRITICAL) for n in intents])


class CountingEncoder:
    """The real ONNX encoder, counting what it is asked to encode."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self.encoder.encode(texts, 64)


def test_refresh_publishes_both_tiers_and_reembeds_nothing_old(
        clinc_dir: Path, tmp_path: Path) -> None:
    raw = json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))
    intents = _intents(raw)
    rows = [(t, y) for t, y in raw["train"] if y in intents]
    random.Random(0).shuffle(rows)
    bootstrap = rows[:200]
    first, second = rows[200:700], rows[700:850]
    settings = Settings(registry_root=tmp_path / "registry", student_buckets=1 << 16,
                        min_calibration=50, accuracy_target=0.97)
    task = _task(intents)
    store = TrainingStore(tmp_path / "store.sqlite")
    encoder = CountingEncoder(TextEncoder.load(ensure_encoder(settings.cache_dir)))
    announced: list[Manifest] = []
    announced2: list[Manifest] = []

    def add(batch: list[tuple[str, str]], start: int) -> None:
        for i, (text, label) in enumerate(batch, start=start):
            store.add_verdict(TeacherVerdict(id=f"v{i}", task="intents", text=text,
                                             label=label, teacher_id="test",
                                             reason="low_confidence"))
        store.commit()

    def refresh() -> dict:
        examples, _ = store.examples()
        embedder = StoredEmbeddings(store.db, encoder)
        outcome = refresh_once(settings, task, bootstrap, examples, 0, RefreshConfig(
            min_calibration=50), announce=announced.append, embedder=embedder,
            announce_tier2=announced2.append)
        assert outcome.promoted, outcome.reason
        return dict(outcome.report["tier2"])

    add(first, 0)
    report1 = refresh()
    registry = Registry(settings.registry_root)
    key = registry_key("intents", "embed")
    assert registry.versions("intents") == ["v0001"] and [m.task for m in announced] == [
        "intents"]
    assert report1["version"] == "v0001", report1["reason"]
    assert registry.versions(key) == ["v0001"]
    manifest2 = registry.show(key, "v0001")
    assert manifest2.data["stage"] == "embed" and manifest2.labels == registry.show(
        "intents").labels
    assert report1["n_forwarded"] >= 10 and report1["encoded"] == len(encoder.texts) > 0
    if report1["promoted"]:  # announced under <task>/embed, as the refine worker follows
        assert [(m.task, m.version) for m in announced2] == [(key, "v0001")]
        assert registry.serving(key).version == "v0001"  # type: ignore[union-attr]
    else:
        assert announced2 == [] and registry.serving(key) is None
    assert {"tier1", "tier2", "teacher"} == set(report1["shares"])
    stored = store.db.execute("SELECT COUNT(*), MIN(dtype) FROM embeddings").fetchone()
    assert stored == (len(set(encoder.texts)), "float16")

    seen = set(encoder.texts)
    calls = len(encoder.texts)
    add(second, len(first))
    report2 = refresh()
    fresh = encoder.texts[calls:]
    assert report2["version"] == "v0002"
    assert report2["encoded"] == len(fresh) > 0
    assert not seen & set(fresh)  # history is never embedded again
    assert len(set(encoder.texts)) == len(encoder.texts)  # no text twice, ever
    # what is new: the new verdicts, and old held-out items tier 1 did not forward before
    assert {t for t, _ in second} & set(fresh)
    assert registry.versions("intents") == ["v0001", "v0002"]
    store.close()


def _ex(i: int, reason: str, tier2: bool = False) -> Example:
    return Example(f"e{i}", f"text {i}", "balance", "verdict", reason, False, i, tier2)


def test_tier2_audits_are_weighted_apart_from_tier1_audits() -> None:
    task = TaskConfig(name="intents", labels=[LabelSpec(name="balance"),
                                              LabelSpec(name="timer")])
    # 100 verdicts: the newest 20 are held out; in them 2 tier-1 audits and 1 tier-2 audit
    examples = [_ex(i, "low_confidence") for i in range(100)]
    examples[85] = _ex(85, "audit")
    examples[90] = _ex(90, "audit")
    examples[95] = _ex(95, "audit", tier2=True)
    examples[10] = _ex(10, "audit", tier2=True)  # an older tier-2 audit, held out too
    data = build_dataset([], examples, task, RefreshConfig(audit_rate=0.1))
    weights = {e.id: w for e, w in zip(data.held, data.weights, strict=True)}
    assert weights["e85"] == weights["e90"] == pytest.approx(2 / 0.1 / 2)
    assert weights["e95"] == weights["e10"] == pytest.approx(1 / 0.1 / 2)
    assert weights["e80"] == 1.0
    assert data.summary["tier2_audit_weight"] == pytest.approx(5.0)
