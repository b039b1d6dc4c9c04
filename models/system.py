"""System metrics, defined once: what the student side plus the teacher do to a stream.

The input is "which items the student side decided, with what label" (any number of tiers:
a cascade passes the union of what its tiers decided), the truth per item, and optionally
the teacher's label (else the teacher is taken to be right) and weights (an audited item
stands for ``1/audit_rate`` accepted ones). The gate, calibration, the backtest, the
trainer's refresh records and the report all call ``system_metrics``:

* ``coverage`` — weighted share of items the student side decides;
* ``decided_accuracy`` — accuracy of that part against the truth (None if it is empty);
* ``system_accuracy`` — the decided part plus the teacher's label for the rest;
* ``teacher_call_fraction`` — share of items sent to the teacher (``called``; by default
  the undecided ones);
* per critical label ``catch_rate`` — the share of its items that reach the teacher
  undecided or are decided correctly as that label; ``escape_rate`` is the complement
  (None where the label has no item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SystemMetrics:
    n: int  # items (unweighted)
    weight: float  # total weight
    effective_n: float  # (sum w)^2 / sum w^2: the sample size the weights are worth
    coverage: float
    decided_weight: float
    decided_accuracy: float | None
    system_accuracy: float
    teacher_call_fraction: float
    catch_rate: dict[str, float | None]
    escape_rate: dict[str, float | None]
    critical_support: dict[str, float]  # weighted count of each critical label's items
    decided_effective_n: float = 0.0  # the effective sample size of the decided part

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SystemMetrics:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def system_metrics(
    truth: Sequence[str],
    decided: Sequence[bool] | np.ndarray,
    labels: Sequence[str | None],
    *,
    critical: Sequence[str] = (),
    teacher: Sequence[str | None] | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    called: Sequence[bool] | np.ndarray | None = None,
) -> SystemMetrics:
    """The system's figures on labelled items (see the module docstring).

    >>> m = system_metrics(["a", "b", "fraud", "fraud"], [True, True, False, True],
    ...                    ["a", "a", None, "b"], critical=["fraud"])
    >>> m.coverage, m.decided_accuracy, m.system_accuracy, m.catch_rate
    (0.75, 0.3333333333333333, 0.5, {'fraud': 0.5})
    """
    n = len(truth)
    if not (len(decided) == len(labels) == n):
        raise ValueError("truth, decided and labels differ in length")
    t = np.asarray(truth, dtype=object)
    d = np.asarray(decided, dtype=bool).reshape(n)
    lab = np.asarray(labels, dtype=object)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    teach = t if teacher is None else np.where(
        np.asarray([x is None for x in teacher], dtype=bool), t, np.asarray(teacher, object))
    c = ~d if called is None else np.asarray(called, dtype=bool)
    total = float(w.sum())
    right = d & (lab == t)
    final_right = np.where(d, right, teach == t)
    dw = float(w[d].sum())
    catch: dict[str, float | None] = {}
    escape: dict[str, float | None] = {}
    support: dict[str, float] = {}
    for label in critical:
        mine = t == label
        sw = float(w[mine].sum())
        support[label] = sw
        if sw <= 0:
            catch[label] = escape[label] = None
            continue
        caught = mine & (~d | (lab == label))
        rate = float(w[caught].sum()) / sw
        catch[label], escape[label] = rate, 1.0 - rate
    return SystemMetrics(
        n=n, weight=total,
        effective_n=total * total / float((w * w).sum()) if n else 0.0,
        coverage=dw / total if total else 0.0,
        decided_weight=dw,
        decided_accuracy=float(w[right].sum()) / dw if dw > 0 else None,
        system_accuracy=float(w[final_right].sum()) / total if total else 0.0,
        teacher_call_fraction=float(w[c].sum()) / total if total else 0.0,
        catch_rate=catch, escape_rate=escape, critical_support=support,
        decided_effective_n=dw * dw / float((w[d] ** 2).sum()) if dw > 0 else 0.0,
    )
