"""The cascade against tier 1 alone on CLINC150 (150 intents, ``report_fraud`` and
``freeze_account`` critical): at the same accuracy target and catch target, tier 1 → tier 2
sends fewer test items to the teacher, with the same catch rate and no lower accuracy.

Slow (~2-3 min on 2 cores: 22,500 texts embedded once, tier 1 trained once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillery.settings import load_settings
from models.cascade import route_cascade, route_metrics
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


def test_a_cascade_of_any_length_hands_on_only_low_confidence_items() -> None:
    labels = ("a", "b", "fraud")
    p1_policy = DecisionPolicy(labels, (0.8, 0.8, 0.8), {"fraud": 0.2})
    p2_policy = DecisionPolicy(labels, (0.6, 0.6, 0.6), {"fraud": 0.2})
    p3_policy = DecisionPolicy(labels, (0.4, 0.4, 0.4), {"fraud": 0.2})
    p1 = np.array([[0.9, 0.05, 0.05],   # stage 1 decides
                   [0.5, 0.45, 0.05],   # handed on; stage 2 sure → stage 2
                   [0.5, 0.45, 0.05],   # handed on; stage 2 unsure → stage 3 decides
                   [0.6, 0.1, 0.3],     # stage 1's floor → teacher, stage 2 not asked
                   [0.1, 0.1, 0.8],     # a critical prediction → teacher
                   [0.5, 0.45, 0.05]])  # handed on twice; stage 3 unsure → teacher
    p2 = np.array([[0.1, 0.9, 0.0], [0.05, 0.9, 0.05], [0.5, 0.45, 0.05], [0.99, 0.0, 0.01],
                   [0.99, 0.0, 0.01], [0.5, 0.45, 0.05]])
    p3 = np.array([[0.0, 1.0, 0.0]] * 3 + [[1.0, 0.0, 0.0]] * 2 + [[0.35, 0.33, 0.32]])
    one = route_cascade([(p1, p1_policy)])
    assert one.stage.tolist() == [1, 0, 0, 0, 0, 0]
    two = route_cascade([(p1, p1_policy), (p2, p2_policy)])
    assert two.stage.tolist() == [1, 2, 0, 0, 0, 0]
    assert two.label_ids[:2].tolist() == [0, 1]
    three = route_cascade([(p1, p1_policy), (p2, p2_policy), (p3, p3_policy)])
    assert three.stage.tolist() == [1, 2, 3, 0, 0, 0]
    assert three.shares() == pytest.approx({"stage1": 1 / 6, "stage2": 1 / 6,
                                            "stage3": 1 / 6, "teacher": 0.5})
    truth = ["a", "b", "b", "fraud", "fraud", "a"]
    whole = route_metrics(three, truth, labels, ["fraud"])
    assert whole.coverage == pytest.approx(0.5) and whole.catch_rate["fraud"] == 1.0
    own = route_metrics(three, truth, labels, ["fraud"], only=2)
    assert own.n == 1 and own.decided_accuracy == 1.0
