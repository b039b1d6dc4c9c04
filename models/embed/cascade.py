"""The cascade's routing, as one function over both tiers' probabilities.

Tier 1 (hashed n-grams) decides what its policy accepts; a ``critical`` item goes straight
to the teacher; the rest (``low_confidence``; with ``floors_onward`` also the items flagged
critical by a floor alone, ``Decided.handed_on``, whose fate tier 2's own floors decide)
goes to tier 2, which decides what *its* policy accepts and forwards the remainder to the
teacher. Both tiers route with ``models.policy.decide`` and the figures
come from ``models.system.system_metrics``: nothing here re-implements either.

Tier 2's policy is calibrated on what it will see, the held-out items tier 1 forwards, and
against what tier 1 decides of the rest (``earlier_part``): the thresholds and floors are
chosen so that the cascade as a whole meets the accuracy and catch targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.calibrate import EarlierStages
from models.policy import Decided, DecisionPolicy, decide
from models.system import SystemMetrics, system_metrics

TEACHER, TIER1, TIER2 = 0, 1, 2


@dataclass(frozen=True)
class CascadeRoute:
    tier: np.ndarray  # int8 [n]: TIER1, TIER2 or TEACHER (who decides the item)
    label_ids: np.ndarray  # int [n]: the deciding tier's label (tier 2's where it saw it)
    skipped: np.ndarray  # bool [n]: tier 1 sent it to the teacher (critical prediction)

    @property
    def decided(self) -> np.ndarray:
        return np.asarray(self.tier != TEACHER)

    def shares(self) -> dict[str, float]:
        n = max(1, len(self.tier))
        return {"tier1": float((self.tier == TIER1).sum() / n),
                "tier2": float((self.tier == TIER2).sum() / n),
                "teacher": float((self.tier == TEACHER).sum() / n)}


def forwarded(probs1: np.ndarray, policy1: DecisionPolicy,
              floors_onward: bool = False) -> np.ndarray:
    """Which items tier 1 sends to tier 2 (``Decided.handed_on``)."""
    return decide(probs1, policy1).handed_on(floors_onward)


def earlier_part(d: Decided, labels: Sequence[str], truth: np.ndarray, weights: np.ndarray,
                 critical: Sequence[str], floors_onward: bool = False) -> EarlierStages:
    """What tier 1 (its decisions ``d`` over the held-out items) decides of them, as the
    weight sums tier 2 is calibrated against: the cascade as a whole must meet the targets."""
    right = d.label_ids == truth
    w = np.asarray(weights, dtype=np.float64)
    kept = ~d.handed_on(floors_onward)  # decided by tier 1, or sent to the teacher
    index = {name: i for i, name in enumerate(labels)}
    totals: dict[str, tuple[float, float]] = {}
    caught: dict[str, float] = {}
    for label in critical:
        mine = (truth == index[label]) & kept
        totals[label] = (float(w[mine].sum()), float((w[mine] ** 2).sum()))
        caught[label] = float(w[mine & (~d.decided | right)].sum())
    return EarlierStages(weight=float(w[d.decided].sum()),
                         correct=float(w[d.decided & right].sum()),
                         squares=float((w[d.decided] ** 2).sum()), critical_total=totals,
                         critical_caught=caught)


def route_cascade(probs1: np.ndarray, policy1: DecisionPolicy, probs2: np.ndarray | None,
                  policy2: DecisionPolicy | None, floors_onward: bool = False) -> CascadeRoute:
    """Route every item through tier 1, then tier 2 for what tier 1 forwards.

    ``probs2`` has a row per item (only the forwarded rows are read) or is None for tier 1
    alone; both tiers' probabilities are over the same labels, in the same order.
    """
    d1 = decide(probs1, policy1)
    tier = np.where(d1.decided, TIER1, TEACHER).astype(np.int8)
    labels = d1.label_ids.copy()
    onward = d1.handed_on(floors_onward)
    skipped = np.asarray(~d1.decided & ~onward)
    if probs2 is not None and policy2 is not None:
        if tuple(policy2.labels) != tuple(policy1.labels):
            raise ValueError("the two tiers' label sets differ")
        rows = np.flatnonzero(onward)
        d2 = decide(probs2[rows], policy2)
        tier[rows[d2.decided]] = TIER2
        labels[rows] = d2.label_ids
    return CascadeRoute(tier, labels, skipped)


def cascade_metrics(route: CascadeRoute, truth: Sequence[int] | np.ndarray, labels: Sequence[str],
                    critical: Sequence[str]) -> SystemMetrics:
    names = list(labels)
    return system_metrics([names[int(i)] for i in truth], route.decided,
                          [names[int(i)] for i in route.label_ids], critical=critical)


def pooled_logits(probs1: np.ndarray, logits2: np.ndarray) -> np.ndarray:
    """Tier 2's scores with tier 1's evidence: log p₁ + log softmax(tier-2 logits).

    A product of experts: on the items tier 1 forwards (its uncertain ones) the two tiers
    err differently, and their agreement is a better signal than either alone. Calibration
    then fits its own temperature over the sum.
    """
    z = logits2 - logits2.max(axis=1, keepdims=True)
    log2 = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return np.asarray(np.log(np.clip(probs1, 1e-12, 1.0)) + log2, dtype=np.float32)
