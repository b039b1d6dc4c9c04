"""The rules that keep a stage from serving under its accuracy target: a serving version
evidently under it is withdrawn by a candidate that decides nothing, and cross-fitted
thresholds are judged on items they were not chosen on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from distillery.settings import Settings
from models import gate, pipeline
from models.calibrate import calibrate_policy, certified_target, cross_fitted, softmax
from models.policy import NEVER
from models.system import SystemMetrics, system_metrics

LABELS = ["a", "b", "c", "d", "e"]

SETTINGS = Settings()


def decided(n: int, right: int, undecided: int = 0) -> SystemMetrics:
    """n decided items of which ``right`` are right, and ``undecided`` the teacher decides."""
    truth = ["a"] * (n + undecided)
    labels = ["a"] * right + ["b"] * (n - right) + [None] * undecided
    return system_metrics(truth, [True] * n + [False] * undecided, labels)


def test_evidently_under_needs_the_upper_bound_under_the_target() -> None:
    assert decided(400, 340).decided_effective_n == pytest.approx(400)
    assert gate.evidently_under(decided(400, 340), SETTINGS)  # 0.85 on 400
    assert not gate.evidently_under(decided(30, 27), SETTINGS)  # 0.90 on 30: may be 0.93
    assert not gate.evidently_under(decided(400, 390), SETTINGS)
    assert not gate.evidently_under(None, SETTINGS)
    assert not gate.evidently_under(decided(0, 0, undecided=10), SETTINGS)


def _gate_against(old: SystemMetrics, monkeypatch: pytest.MonkeyPatch,
                  floor_basis: dict[str, str] | None = None) -> Any:
    """The gate for a candidate that decides nothing, against a serving version with ``old``."""
    monkeypatch.setattr(pipeline, "serving_system", lambda *a: ("v0003", old))
    result = SimpleNamespace(system=decided(0, 0, undecided=400), summary={},
                             critical_labels=[],
                             calibration=SimpleNamespace(floor_basis=floor_basis or {}))
    return pipeline.gate(result, object(), SETTINGS)  # type: ignore[arg-type]


def test_a_candidate_withheld_for_a_critical_label_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _gate_against(decided(30, 27), monkeypatch,
                            {"fraud": "withheld (n=2)", "abuse": "calibrated (n=90)"})
    assert not refused.passed
    assert refused.reason.endswith("it decides nothing: too few held-out items of fraud "
                                   "(withheld (n=2)) to promise the catch rate")


def test_a_candidate_deciding_nothing_withdraws_a_version_evidently_under_target(
        monkeypatch: pytest.MonkeyPatch) -> None:
    withdraw = _gate_against(decided(400, 340), monkeypatch)
    assert withdraw.passed and withdraw.reason.startswith("withdraws serving v0003")
    keep = _gate_against(decided(30, 27), monkeypatch)  # too few items to say
    assert not keep.passed and "decides nothing" in keep.reason


def _noisy(n: int, k: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities over k labels whose top label is right with rising confidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), y] += signal * rng.random(n) * 4
    return softmax(logits, 1.0), y


def _certified_policy(probs: np.ndarray, y: np.ndarray) -> Any:
    return calibrate_policy(
        np.log(probs), y, None, LABELS, [], accuracy_target=0.93, catch_target=0.95, z=1.0,
        min_support=5, conservative_floor=0.5,
        sample=pipeline.unweighted_sample([LABELS[i] for i in y], []), certify=True)


def test_cross_fitted_thresholds_deliver_the_target_out_of_sample() -> None:
    probs, y = _noisy(3000, 5, 1.0, seed=1)
    w = np.ones(len(y))
    internal = certified_target(probs, y, w, 0.93, z=1.0, min_support=5)
    assert internal is not None and internal >= 0.93
    correct, total, _ = cross_fitted(probs, y, w, internal, z=1.0, min_support=5)
    assert total > 0 and correct / total >= 0.93
    # on fresh items from the same source, the certified thresholds hold as well
    fresh, fy = _noisy(20000, 5, 1.0, seed=2)
    policy = _certified_policy(probs, y)
    thresholds = np.array(policy.policy.thresholds)
    pred = fresh.argmax(axis=1)
    taken = fresh[np.arange(len(fy)), pred] >= thresholds[pred]
    assert taken.sum() > 100 and (pred[taken] == fy[taken]).mean() >= 0.93


def test_labels_no_threshold_can_trust_give_a_policy_that_decides_nothing() -> None:
    probs, y = _noisy(600, 5, 0.0, seed=3)  # no signal: nothing is 93% right
    w = np.ones(len(y))
    assert certified_target(probs, y, w, 0.93, z=1.0, min_support=5) is None
    policy = _certified_policy(probs, y)
    assert all(t == NEVER for t in policy.policy.thresholds)
