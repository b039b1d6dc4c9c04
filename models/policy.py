"""The routing decision, once: which items a student tier decides alone, and why not the rest.

``decide(probs, policy)`` is a pure function over a probability matrix, so the classify
worker (``streams.routing``), the backtest, calibration and the gate all route the same way,
whatever tier produced the probabilities. For each item, in this order:

* ``critical`` — the predicted label is critical, or some critical label's probability
  reaches that label's routing floor: the teacher must see it;
* ``low_confidence`` — the top probability is under the predicted class's acceptance
  threshold;
* ``confident`` — the student decides it.

The policy travels in a version's manifest (``PolicyData``, under the key ``policy``): the
per-class thresholds, the per-critical-label floors, the targets they were chosen for and
the calibration sample they were chosen on. ``policy_from_manifest`` reads it and keeps old
manifests working: their top-level ``thresholds`` and one floor for every critical label
(``settings.critical_floor``, passed in by the caller).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np

Reason = Literal["confident", "low_confidence", "critical"]
REASONS: tuple[Reason, ...] = ("confident", "low_confidence", "critical")
CONFIDENT, LOW_CONFIDENCE, CRITICAL = 0, 1, 2
NEVER = 1.01  # a threshold no probability reaches


@dataclass(frozen=True)
class DecisionPolicy:
    """Per-class acceptance thresholds and per-critical-label routing floors."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]  # one per label, in label order
    floors: Mapping[str, float] = field(default_factory=dict)  # critical label -> floor

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.labels):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        unknown = [c for c in self.floors if c not in self.labels]
        if unknown:
            raise ValueError(f"floors for unknown labels: {', '.join(unknown)}")

    @property
    def critical(self) -> list[str]:
        return [c for c in self.labels if c in self.floors]

    def with_floors(self, floors: Mapping[str, float]) -> DecisionPolicy:
        return DecisionPolicy(self.labels, self.thresholds, dict(floors))

    def with_thresholds(self, thresholds: Sequence[float]) -> DecisionPolicy:
        return DecisionPolicy(self.labels, tuple(float(t) for t in thresholds), self.floors)


@dataclass(frozen=True)
class Decided:
    """What ``decide`` made of a batch: arrays of the batch's length."""

    decided: np.ndarray  # bool: the student decides this item
    label_ids: np.ndarray  # int: the student's label (argmax)
    confidence: np.ndarray  # float: its probability
    reason_codes: np.ndarray  # int8: index into REASONS
    # bool: routed ``critical`` by a floor alone (the predicted label is not critical)
    by_floor: np.ndarray

    def handed_on(self) -> np.ndarray:
        """bool: what a cascade hands to its next stage — the ``low_confidence`` items; an
        item routed ``critical`` (predicted, or flagged by a floor) goes to the teacher."""
        return np.asarray(self.reason_codes == LOW_CONFIDENCE)

    def reasons(self) -> list[Reason]:
        return [REASONS[int(c)] for c in self.reason_codes]


def decide(probs: np.ndarray, policy: DecisionPolicy) -> Decided:
    """Route a batch of probabilities ``[n, labels]`` under ``policy``.

    >>> p = DecisionPolicy(("a", "b", "fraud"), (0.6, 0.9, 0.5), {"fraud": 0.2})
    >>> d = decide(np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.1, 0.3],
    ...                      [0.1, 0.2, 0.7]]), p)
    >>> d.decided.tolist(), d.reasons()
    ([True, False, False, False], ['confident', 'low_confidence', 'critical', 'critical'])
    >>> d.by_floor.tolist(), d.handed_on().tolist()  # the third by its floor alone
    ([False, False, True, False], [False, True, False, False])
    """
    probs = np.asarray(probs)
    n = probs.shape[0]
    if probs.ndim != 2 or probs.shape[1] != len(policy.labels):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(policy.labels)} labels")
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return Decided(empty, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, np.int8),
                       empty)
    label_ids = probs.argmax(axis=1)
    confidence = probs[np.arange(n), label_ids]
    thresholds = np.asarray(policy.thresholds, dtype=np.float64)
    codes = np.where(confidence >= thresholds[label_ids], CONFIDENT, LOW_CONFIDENCE)
    by_floor = np.zeros(n, dtype=bool)
    if policy.floors:
        index = {name: i for i, name in enumerate(policy.labels)}
        ids = np.array([index[c] for c in policy.floors], dtype=np.int64)
        floors = np.array(list(policy.floors.values()), dtype=np.float64)
        predicted = np.isin(label_ids, ids)
        floored = (probs[:, ids] >= floors).any(axis=1)
        by_floor = floored & ~predicted
        codes = np.where(floored | predicted, CRITICAL, codes)
    codes = codes.astype(np.int8)
    return Decided(codes == CONFIDENT, label_ids, confidence, codes, by_floor)


# --- the manifest's shape ---------------------------------------------------------------


class CalibrationSample(TypedDict):
    """The held-out verdicts a policy was chosen on (weights: audits stand for 1/audit_rate)."""

    n: int
    weight: float
    effective_n: float
    audits: int
    deferred: int
    gold: int
    critical_support: dict[str, int]


class CurvePoint(TypedDict):
    """One point of the calls-vs-accuracy curve: the policy chosen for ``target``."""

    target: float
    coverage: float
    decided_accuracy: float
    system_accuracy: float
    teacher_call_fraction: float
    thresholds: list[float]


class PolicyData(TypedDict):
    """The ``policy`` key of a manifest."""

    accuracy_target: float  # the decided part's accuracy target the thresholds were chosen for
    catch_target: float  # each critical label's catch-rate target
    thresholds: list[float]  # per label, in the manifest's label order
    floors: dict[str, float]  # per critical label
    # per critical label: "calibrated", "conservative", "tolerance" or "withheld" (n=...)
    floor_basis: dict[str, str]
    temperature: float
    sample: CalibrationSample
    curve: list[CurvePoint]
    z: NotRequired[float]


def policy_data(policy: DecisionPolicy, *, accuracy_target: float, catch_target: float,
                floor_basis: Mapping[str, str], temperature: float, sample: CalibrationSample,
                curve: list[CurvePoint], z: float) -> PolicyData:
    return PolicyData(accuracy_target=accuracy_target, catch_target=catch_target,
                      thresholds=[float(t) for t in policy.thresholds],
                      floors={k: float(v) for k, v in policy.floors.items()},
                      floor_basis=dict(floor_basis), temperature=temperature, sample=sample,
                      curve=curve, z=z)


def cached_policy(cache: dict[float, DecisionPolicy], manifest: Mapping[str, Any],
                  fallback_floor: float) -> DecisionPolicy:
    """``policy_from_manifest``, kept in ``cache`` per fallback floor: a served model routes
    every batch with it, and its manifest does not change while it serves."""
    policy = cache.get(fallback_floor)
    if policy is None:
        policy = cache[fallback_floor] = policy_from_manifest(manifest, fallback_floor)
    return policy


def policy_from_manifest(manifest: Mapping[str, Any], fallback_floor: float) -> DecisionPolicy:
    """The routing policy a manifest carries; old manifests (no ``policy`` key) get their
    top-level thresholds and ``fallback_floor`` for every critical label."""
    labels = tuple(str(x) for x in manifest["labels"])
    critical = [str(c) for c in manifest.get("critical_labels", []) if c in labels]
    data = manifest.get("policy")
    if isinstance(data, Mapping) and "thresholds" in data:
        floors = {str(k): float(v) for k, v in dict(data.get("floors", {})).items()}
        floors.update({c: fallback_floor for c in critical if c not in floors})
        return DecisionPolicy(labels, tuple(float(t) for t in data["thresholds"]), floors)
    thresholds = tuple(float(t) for t in manifest["thresholds"])
    return DecisionPolicy(labels, thresholds, {c: fallback_floor for c in critical})


def curve_policy(manifest: Mapping[str, Any], target: float,
                 fallback_floor: float) -> DecisionPolicy | None:
    """The policy the manifest's curve chose for ``target`` (None if it has no such point)."""
    base = policy_from_manifest(manifest, fallback_floor)
    data = manifest.get("policy") or {}
    for point in data.get("curve", []):
        if abs(float(point["target"]) - target) < 1e-9:
            return base.with_thresholds(point["thresholds"])
    return None
