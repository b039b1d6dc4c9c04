"""The cascade against tier 1 alone on CLINC150 (150 intents, ``report_fraud`` and
``freeze_account`` critical): at the same accuracy target and catch target, tier 1 → tier 2
sends fewer test items to the teacher, with the same catch rate and no lower accuracy.

Slow (~2-3 min on 2 cores: 22,500 texts embedded once, tier 1 trained once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillery.settings import load_settings
from models.embed.cascade import TEACHER, TIER1, TIER2, pooled_logits, route_cascade
from models.embed.encoder import TextEncoder
from models.embed.export import ensure_encoder
from models.policy import DecisionPolicy
from workers.bench import cascade as C


@pytest.mark.slow
def test_cascade_calls_the_teacher_less_on_clinc(clinc_dir: Path, tmp_path: Path) -> None:
    settings = load_settings()
    stream = C.clinc_stream(clinc_dir / "data_full.json")
    encoder = TextEncoder.load(ensure_encoder(settings.cache_dir))
    vectors = tuple(C.cached_embeddings(s.texts, lambda t: encoder.encode(t, 64), tmp_path,
                                        "minilm") for s in (stream.train, stream.calib,
                                                            stream.test))
    t1 = C.tier1_logits(stream, settings)
    t2 = C.tier2_logits(stream, vectors)  # type: ignore[arg-type]
    (row,) = C.compare(stream, t1, t2, settings, [0.95], pool=False)
    alone, cascade = row["tier1"], row["cascade"]
    assert cascade["shares"]["tier2"] > 0
    assert cascade["teacher_call_fraction"] < alone["teacher_call_fraction"]
    for label, rate in alone["catch_rate"].items():
        assert cascade["catch_rate"][label] >= rate
    assert cascade["system_accuracy"] >= alone["system_accuracy"] - 0.002
    assert cascade["decided_accuracy"] >= alone["decided_accuracy"] - 0.002


def test_cascade_sends_floor_flags_to_tier2_and_critical_predictions_to_the_teacher() -> None:
    labels = ("a", "b", "fraud")
    p1_policy = DecisionPolicy(labels, (0.8, 0.8, 0.8), {"fraud": 0.2})
    p2_policy = DecisionPolicy(labels, (0.6, 0.6, 0.6), {"fraud": 0.2})
    p1 = np.array([[0.9, 0.05, 0.05],   # tier 1 decides
                   [0.5, 0.45, 0.05],   # forwarded; tier 2 sure → tier 2
                   [0.5, 0.45, 0.05],   # forwarded; tier 2 unsure → teacher
                   [0.6, 0.1, 0.3],     # tier 1's floor alone → tier 2, which clears it
                   [0.6, 0.1, 0.3],     # tier 1's floor alone → tier 2, whose floor holds it
                   [0.1, 0.1, 0.8]])    # a critical prediction → teacher, tier 2 not asked
    p2 = np.array([[0.1, 0.9, 0.0], [0.05, 0.9, 0.05], [0.5, 0.45, 0.05], [0.99, 0.0, 0.01],
                   [0.7, 0.0, 0.3], [0.99, 0.0, 0.01]])
    default = route_cascade(p1, p1_policy, p2, p2_policy)  # floor flags go to the teacher
    assert default.tier.tolist() == [TIER1, TIER2, TEACHER, TEACHER, TEACHER, TEACHER]
    route = route_cascade(p1, p1_policy, p2, p2_policy, floors_onward=True)
    assert route.tier.tolist() == [TIER1, TIER2, TEACHER, TIER2, TEACHER, TEACHER]
    assert route.label_ids[:4].tolist() == [0, 1, 0, 0]
    assert route.skipped.tolist() == [False, False, False, False, False, True]
    assert route_cascade(p1, p1_policy, None, None).tier.tolist() == [
        TIER1, TEACHER, TEACHER, TEACHER, TEACHER, TEACHER]
    pooled = pooled_logits(p1, np.log(p2 + 1e-9))
    assert pooled.shape == p1.shape and np.isfinite(pooled).all()
