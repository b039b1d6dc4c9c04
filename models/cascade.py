"""The cascade's routing over arrays of probabilities: what the gate, calibration and the
offline benches use (the stream routes with ``streams.routing``, item by item, under the
same ``models.policy.decide``).

Every stage decides what its policy accepts; a ``critical`` item goes straight to the
teacher; the rest (``low_confidence``, ``Decided.handed_on``) goes to the next stage, the
last stage's to the teacher. Figures come from ``models.system.system_metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.policy import DecisionPolicy, decide
from models.system import SystemMetrics, system_metrics

TEACHER = 0  # ``CascadeRoute.stage``: 0 for the teacher, else the deciding stage's 1-based place


@dataclass(frozen=True)
class CascadeRoute:
    stage: np.ndarray  # int8 [n]: TEACHER or the 1-based place of the stage that decides
    label_ids: np.ndarray  # int [n]: the last stage that saw the item, its label

    @property
    def decided(self) -> np.ndarray:
        return np.asarray(self.stage != TEACHER)

    def shares(self, weights: np.ndarray | None = None) -> dict[str, float]:
        """Weighted share per stage (``stage1``, ``stage2``, ...) and for the ``teacher``."""
        w = np.ones(len(self.stage)) if weights is None else np.asarray(weights, np.float64)
        total = float(w.sum()) or 1.0
        places = range(1, int(self.stage.max(initial=0)) + 1)
        out = {f"stage{k}": float(w[self.stage == k].sum() / total) for k in places}
        return {**out, "teacher": float(w[self.stage == TEACHER].sum() / total)}


def route_cascade(stages: Sequence[tuple[np.ndarray, DecisionPolicy]]) -> CascadeRoute:
    """Route every item through the stages in order: ``(probs, policy)`` per stage, each
    ``probs`` with a row per item (only the rows that reach the stage are read), all over
    the same labels in the same order."""
    if not stages:
        raise ValueError("a cascade has at least one stage")
    first_probs, first_policy = stages[0]
    n = len(first_probs)
    stage = np.zeros(n, dtype=np.int8)
    labels = np.zeros(n, dtype=np.int64)
    reach = np.arange(n)
    for place, (probs, policy) in enumerate(stages, start=1):
        if tuple(policy.labels) != tuple(first_policy.labels):
            raise ValueError("the stages' label sets differ")
        d = decide(np.asarray(probs)[reach], policy)
        stage[reach[d.decided]] = place
        labels[reach] = d.label_ids
        reach = reach[d.handed_on()]
    return CascadeRoute(stage, labels)


def forwarded(probs: np.ndarray, policy: DecisionPolicy) -> np.ndarray:
    """Which items a stage hands on to the next (``Decided.handed_on``)."""
    return decide(probs, policy).handed_on()


def route_metrics(route: CascadeRoute, truth: Sequence[str], labels: Sequence[str],
                  critical: Sequence[str], weights: np.ndarray | None = None,
                  only: int | None = None) -> SystemMetrics:
    """The system figures of a routed cascade against ``truth``; with ``only``, of that
    stage's own decided part (what it alone decides, and how well)."""
    names = list(labels)
    rows = np.arange(len(truth)) if only is None else np.flatnonzero(route.stage == only)
    w = None if weights is None else np.asarray(weights, np.float64)[rows].tolist()
    return system_metrics([truth[int(i)] for i in rows], route.decided[rows],
                          [names[int(i)] for i in route.label_ids[rows]],
                          critical=critical if only is None else (), weights=w)
