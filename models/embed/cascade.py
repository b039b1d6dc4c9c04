"""The cascade's routing, as one function over both tiers' probabilities.

Tier 1 (hashed n-grams) decides what its policy accepts; an item tier 1 routes as
``critical`` goes straight to the teacher (a critical item skips tier 2); the rest
(``low_confidence``) goes to tier 2, which decides what *its* policy accepts and forwards the
remainder to the teacher. Both tiers route with ``models.policy.decide`` and the figures
come from ``models.system.system_metrics``: nothing here re-implements either.

Tier 2's policy is calibrated on what it will see: the held-out items tier 1 forwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.policy import CRITICAL, DecisionPolicy, decide
from models.system import SystemMetrics, system_metrics

TEACHER, TIER1, TIER2 = 0, 1, 2


@dataclass(frozen=True)
class CascadeRoute:
    tier: np.ndarray  # int8 [n]: TIER1, TIER2 or TEACHER (who decides the item)
    label_ids: np.ndarray  # int [n]: the deciding tier's label (tier 2's where it saw it)
    skipped: np.ndarray  # bool [n]: tier 1 sent it to the teacher as critical

    @property
    def decided(self) -> np.ndarray:
        return np.asarray(self.tier != TEACHER)

    def shares(self) -> dict[str, float]:
        n = max(1, len(self.tier))
        return {"tier1": float((self.tier == TIER1).sum() / n),
                "tier2": float((self.tier == TIER2).sum() / n),
                "teacher": float((self.tier == TEACHER).sum() / n)}


def forwarded(probs1: np.ndarray, policy1: DecisionPolicy) -> np.ndarray:
    """Which items tier 1 sends to tier 2 (undecided, and not routed as critical)."""
    d = decide(probs1, policy1)
    return np.asarray(~d.decided & (d.reason_codes != CRITICAL))


def route_cascade(probs1: np.ndarray, policy1: DecisionPolicy, probs2: np.ndarray | None,
                  policy2: DecisionPolicy | None) -> CascadeRoute:
    """Route every item through tier 1, then tier 2 for what tier 1 forwards.

    ``probs2`` has a row per item (only the forwarded rows are read) or is None for tier 1
    alone; both tiers' probabilities are over the same labels, in the same order.
    """
    d1 = decide(probs1, policy1)
    tier = np.where(d1.decided, TIER1, TEACHER).astype(np.int8)
    labels = d1.label_ids.copy()
    skipped = np.asarray(d1.reason_codes == CRITICAL)
    if probs2 is not None and policy2 is not None:
        if tuple(policy2.labels) != tuple(policy1.labels):
            raise ValueError("the two tiers' label sets differ")
        rows = np.flatnonzero(~d1.decided & ~skipped)
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
