"""Calibrate the routing policy, not only the student, on weighted held-out verdicts.

1. A temperature (weighted negative log-likelihood, bounded to [T_MIN, T_MAX]).
2. Per-class acceptance thresholds that **minimise teacher calls** subject to the decided
   part's accuracy meeting ``accuracy_target``: a class predicted at least ``min_support``
   times has its own threshold, the others share one (a pooled group). Among the cut points
   a Lagrangian search (per group, the prefix by confidence that maximises
   ``weight + mu * (correct - target * weight)``, for a grid of ``mu``) keeps the largest
   accepted weight whose accuracy, judged by a Wilson lower bound (``z``) on the effective
   sample size of the weights, still meets the target.
3. Per critical label a routing floor: the highest floor on that label's probability such
   that the label's catch rate (share of its items sent to the teacher, under the thresholds
   above) has a Wilson lower bound (z at least ``CATCH_Z``) at or over ``catch_target``.
   While a label has too few held-out items for any floor to show that, it gets
   ``conservative_floor`` if none of them needed a floor (each was predicted as the label
   or routed as low confidence anyway); if some did, the floor widens to a one-sided
   normal tolerance limit on the label's log-odds (``tolerance_floor``), and with too few
   items for even that it is 0: the stage decides nothing until the evidence allows.
4. The curve: the same thresholds for a grid of accuracy targets, with the system metrics
   each would give on these items (what ``backtest`` and ``report`` draw).

Weights: an audited item stands for the accepted region (``1/audit_rate`` items), a
deferred item for itself. Everything here is numpy over plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from models.policy import (
    NEVER,
    CalibrationSample,
    CurvePoint,
    DecisionPolicy,
    PolicyData,
    decide,
    policy_data,
)
from models.system import SystemMetrics, system_metrics

T_MIN, T_MAX = 0.5, 10.0
CURVE_TARGETS = (0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99)
CATCH_Z = 1.645  # the least z of the catch-rate bound
MAX_FLOOR = 0.5  # at or above it the label is the argmax, which routes it anyway
_MUS = np.concatenate([[0.0], np.geomspace(0.05, 1e5, 80)])


@dataclass(frozen=True)
class Calibration:
    temperature: float
    policy: DecisionPolicy
    floor_basis: dict[str, str]
    metrics: SystemMetrics  # the chosen policy on the calibration items
    curve: list[CurvePoint]
    sample: CalibrationSample
    accuracy_target: float
    catch_target: float
    z: float

    @property
    def thresholds(self) -> list[float]:
        return list(self.policy.thresholds)

    @property
    def expected_coverage(self) -> float:
        return self.metrics.coverage

    def policy_data(self) -> PolicyData:
        """The manifest's ``policy`` block (both tiers write it)."""
        return policy_data(self.policy, accuracy_target=self.accuracy_target,
                           catch_target=self.catch_target, floor_basis=self.floor_basis,
                           temperature=self.temperature, sample=self.sample,
                           curve=self.curve, z=self.z)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray,
                    weights: np.ndarray | None = None) -> float:
    """The temperature in [T_MIN, T_MAX] minimising the (weighted) negative log-likelihood.

    A coarse grid on log T, then a finer one around the best point. The lower bound
    matters: when the holdout is separable the NLL keeps falling as T → 0 and an unbounded
    fit saturates every probability to 0 or 1, leaving nothing for the thresholds.
    """
    if len(y) == 0:
        return 1.0
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)

    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(y)), y]
        return float(-(w * np.log(np.clip(p, 1e-12, 1.0))).sum() / w.sum())

    grid = np.exp(np.linspace(np.log(T_MIN), np.log(T_MAX), 40))
    best = float(min(grid, key=nll))
    step = (np.log(T_MAX) - np.log(T_MIN)) / 39
    fine = np.exp(np.linspace(np.log(best) - step, np.log(best) + step, 21))
    return float(np.clip(min(fine, key=nll), T_MIN, T_MAX))


def wilson_lower(correct: np.ndarray | float, total: np.ndarray | float,
                 z: float) -> np.ndarray:
    """Wilson lower bound of ``correct / total`` (both may be weighted, effective counts)."""
    total = np.maximum(np.asarray(total, dtype=np.float64), 1e-12)
    p = np.clip(np.asarray(correct, dtype=np.float64) / total, 0.0, 1.0)
    centre = p + z * z / (2 * total)
    spread = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return np.asarray((centre - spread) / (1 + z * z / total))


def _bound(correct_w: float, total_w: float, sq_w: float, z: float) -> float:
    """Wilson bound with the effective sample size of the weights."""
    if total_w <= 0:
        return 0.0
    n_eff = total_w * total_w / max(sq_w, 1e-12)
    return float(wilson_lower(correct_w / total_w * n_eff, n_eff, z))


@dataclass
class _Group:
    conf: np.ndarray  # sorted descending
    cum_w: np.ndarray  # prefix sums, index 0 = empty prefix
    cum_c: np.ndarray
    cum_sq: np.ndarray
    cuts: np.ndarray  # prefix lengths allowed (between different confidences), incl. 0

    @classmethod
    def of(cls, conf: np.ndarray, right: np.ndarray, w: np.ndarray) -> _Group:
        order = np.argsort(-conf, kind="stable")
        c, r, ww = conf[order], right[order].astype(np.float64), w[order]
        zero = np.zeros(1)
        boundary = np.append(c[1:] < c[:-1], True) if len(c) else np.zeros(0, bool)
        cuts = np.concatenate([[0], np.flatnonzero(boundary) + 1]).astype(np.int64)
        return cls(c, np.concatenate([zero, np.cumsum(ww)]),
                   np.concatenate([zero, np.cumsum(ww * r)]),
                   np.concatenate([zero, np.cumsum(ww * ww)]), cuts)

    def best_cut(self, mu: float, target: float) -> int:
        w, c = self.cum_w[self.cuts], self.cum_c[self.cuts]
        gain = w + mu * (c - target * w)
        return int(self.cuts[int(np.argmax(gain))])

    def threshold(self, cut: int) -> float:
        return float(self.conf[cut - 1]) if cut > 0 else NEVER


def choose_thresholds(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, target: float,
                      z: float, min_support: int) -> np.ndarray:
    """Per-class thresholds: most accepted weight with a decided-accuracy bound >= target."""
    k = probs.shape[1]
    if len(y) == 0:
        return np.full(k, NEVER)
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(len(y)), pred]
    right = pred == y
    counts = np.bincount(pred, minlength=k)
    own = [c for c in range(k) if counts[c] >= min_support]
    pooled = ~np.isin(pred, own)
    groups = [_Group.of(conf[pred == c], right[pred == c], weights[pred == c]) for c in own]
    groups.append(_Group.of(conf[pooled], right[pooled], weights[pooled]))
    best: tuple[float, list[int]] | None = None
    for mu in _MUS:
        cuts = [g.best_cut(float(mu), target) for g in groups]
        tw = sum(float(g.cum_w[i]) for g, i in zip(groups, cuts, strict=True))
        tc = sum(float(g.cum_c[i]) for g, i in zip(groups, cuts, strict=True))
        sq = sum(float(g.cum_sq[i]) for g, i in zip(groups, cuts, strict=True))
        if tw > 0 and _bound(tc, tw, sq, z) >= target and (best is None or tw > best[0]):
            best = (tw, cuts)
    if best is None:
        return np.full(k, NEVER)
    cuts = best[1]
    out = np.full(k, groups[-1].threshold(cuts[-1]))
    for c, g, i in zip(own, groups, cuts, strict=False):
        out[c] = g.threshold(i)
    return out


def cross_fitted(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, target: float,
                 z: float, min_support: int, seed: int = 0) -> tuple[float, float, float]:
    """What ``choose_thresholds`` at ``target`` really delivers, out of sample: thresholds
    chosen on one half of the held-out items decide the other half, both ways round.
    Returns the decided part's (correct weight, weight, squared weight) over both halves."""
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[0::2], order[1::2])
    correct = total = squares = 0.0
    for fit, check in (halves, halves[::-1]):
        if len(fit) == 0 or len(check) == 0:
            continue
        thresholds = choose_thresholds(probs[fit], y[fit], weights[fit], target, z,
                                       min_support)
        p = probs[check]
        pred = p.argmax(axis=1)
        taken = p[np.arange(len(check)), pred] >= thresholds[pred]
        w = weights[check][taken]
        correct += float(w[pred[taken] == y[check][taken]].sum())
        total += float(w.sum())
        squares += float((w * w).sum())
    return correct, total, squares


def certified_target(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, target: float,
                     z: float, min_support: int) -> float | None:
    """The least internal target, from ``target`` up, whose thresholds deliver ``target``
    out of sample (``cross_fitted``'s accuracy at or above it): choosing thresholds on the
    same items they are judged on flatters them. None when no internal target does."""
    for internal in np.arange(target, 0.9951, 0.005):
        correct, total, _ = cross_fitted(probs, y, weights, float(internal), z, min_support)
        if total <= 0:
            return None
        if correct / total >= target:
            return float(internal)
    return None


def tolerance_factor(n: float, coverage: float, z: float) -> float | None:
    """One-sided normal tolerance factor k: with confidence (one-sided ``z``), at least
    ``coverage`` of a normal population lies above ``mean - k * sd`` of ``n`` draws
    (Natrella's approximation). None when ``n`` is too small for any."""
    zp = NormalDist().inv_cdf(coverage)
    if n <= 1.0:
        return None
    a = 1.0 - z * z / (2.0 * (n - 1.0))
    b = zp * zp - z * z / n
    if a <= 0.0 or zp * zp - a * b < 0.0:
        return None
    return float((zp + np.sqrt(zp * zp - a * b)) / a)


def tolerance_floor(p: np.ndarray, w: np.ndarray, coverage: float, z: float) -> float | None:
    """The probability under which, by a normal tolerance limit on the (weighted) log-odds
    ``p`` of a critical label's own held-out items, at most ``1 - coverage`` of its items
    fall, with one-sided confidence ``z``: a floor that widens as the evidence thins. None
    when the items are too few (effective size) for any such limit."""
    if len(p) == 0 or w.sum() <= 0:
        return None
    n_eff = float(w.sum() ** 2 / max(float((w * w).sum()), 1e-12))
    k = tolerance_factor(n_eff, coverage, z)
    if k is None:
        return None
    q = np.clip(p, 1e-6, 1 - 1e-6)
    x = np.log(q / (1 - q))
    mean = float((w * x).sum() / w.sum())
    var = float((w * (x - mean) ** 2).sum() / w.sum()) * n_eff / max(n_eff - 1.0, 1e-9)
    sd = float(np.sqrt(max(var, 0.0)))
    limit = mean - k * sd
    return float(1.0 / (1.0 + np.exp(-limit)))


def choose_floors(probs: np.ndarray, y: np.ndarray, weights: np.ndarray,
                  base: DecisionPolicy, critical: Sequence[str], target: float, z: float,
                  conservative_floor: float) -> tuple[dict[str, float], dict[str, str]]:
    """Per critical label, the highest floor whose catch-rate bound meets ``target``."""
    floors: dict[str, float] = {}
    basis: dict[str, str] = {}
    index = {name: i for i, name in enumerate(base.labels)}
    # items routed anyway: undecided under the thresholds, or predicted as a critical label
    caught_anyway = ~decide(probs, base.with_floors({c: MAX_FLOOR for c in critical})).decided
    for label in critical:
        i = index[label]
        mine = y == i
        w = weights[mine]
        if not mine.any():
            floors[label], basis[label] = conservative_floor, "conservative (n=0)"
            continue
        p = probs[mine, i]
        free = caught_anyway[mine]
        candidates = np.unique(np.concatenate([[MAX_FLOOR], p[~free & (p < MAX_FLOOR)]]))[::-1]
        chosen = None
        for f in candidates:  # highest first: the first that meets the bound is the cheapest
            caught = free | (p >= f)
            if _bound(float(w[caught].sum()), float(w.sum()), float((w * w).sum()),
                      z) >= target:
                chosen = float(f)
                break
        if chosen is None:
            # Too few of the label's items to show the catch rate by counting. Where some
            # of them were caught by the floor alone, the floor cannot be the lowest of their
            # probabilities (a new item falls under that 1/(n+1) of the time): a normal
            # tolerance limit on their log-odds, no higher than ``conservative_floor``, and
            # none at all (the stage decides nothing) on too few items for that.
            needed = bool((~free & (p < MAX_FLOOR)).any())
            limit = tolerance_floor(p, w, target, z) if needed else 1.0
            if limit is None:
                floors[label] = 0.0
                basis[label] = f"withheld (n={int(mine.sum())})"
            else:
                floors[label] = min(conservative_floor, float(candidates[-1]), limit)
                kind = "tolerance" if needed else "conservative"
                basis[label] = f"{kind} (n={int(mine.sum())})"
        else:
            floors[label], basis[label] = chosen, f"calibrated (n={int(mine.sum())})"
    return floors, basis


def _metrics(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, policy: DecisionPolicy,
             critical: Sequence[str]) -> SystemMetrics:
    d = decide(probs, policy)
    names = policy.labels
    return system_metrics([names[i] for i in y], d.decided,
                          [names[i] for i in d.label_ids], critical=critical, weights=weights)


def calibrate_policy(logits: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                     labels: Sequence[str], critical: Sequence[str], *,
                     accuracy_target: float, catch_target: float, z: float, min_support: int,
                     conservative_floor: float, sample: CalibrationSample,
                     curve_targets: Sequence[float] = CURVE_TARGETS,
                     certify: bool = False) -> Calibration:
    """Temperature, thresholds, floors and the curve, on the held-out items (see above)."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    temperature = fit_temperature(logits, y, w)
    probs = softmax(logits, temperature) if len(y) else np.zeros((0, len(labels)))
    names = tuple(labels)
    crit = [c for c in critical if c in names]

    def thresholds_for(target: float) -> np.ndarray:
        return choose_thresholds(probs, y, w, target, z, min_support)

    chosen = accuracy_target
    if certify and len(y):
        internal = certified_target(probs, y, w, accuracy_target, z, min_support)
        chosen = internal if internal is not None else 1.0  # 1.0: accept nothing uncertain
    base = DecisionPolicy(names, tuple(thresholds_for(chosen) if chosen < 1.0
                                       else np.full(len(names), NEVER)))
    # a critical miss costs more than a wrong routine decision: at least a 95% one-sided bound
    floors, basis = choose_floors(probs, y, w, base, crit, catch_target, max(z, CATCH_Z),
                                  conservative_floor)
    policy = base.with_floors(floors)
    curve: list[CurvePoint] = []
    for target in sorted({*curve_targets, accuracy_target}):
        point = policy if target == accuracy_target else policy.with_thresholds(
            thresholds_for(target).tolist())
        m = _metrics(probs, y, w, point, crit)
        curve.append(CurvePoint(target=float(target), coverage=m.coverage,
                                decided_accuracy=m.decided_accuracy if m.decided_accuracy
                                is not None else 1.0,
                                system_accuracy=m.system_accuracy,
                                teacher_call_fraction=m.teacher_call_fraction,
                                thresholds=[float(t) for t in point.thresholds]))
    return Calibration(temperature, policy, basis, _metrics(probs, y, w, policy, crit), curve,
                       sample, accuracy_target, catch_target, z)
