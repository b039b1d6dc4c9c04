"""Temperature scaling, then per-class acceptance thresholds that meet a precision target.

Thresholds are chosen on held-out data: for each class, the lowest confidence at which the
items the student would accept *as that class* keep their precision at or above the
target; precision is judged by a Wilson lower bound (``z``), not the raw ratio, so that a
threshold chosen on a few hundred items still holds on new data. A class with fewer than
``min_support`` predicted items takes the global threshold, chosen the same way on all
items; where no threshold meets the target, the class accepts nothing (1.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEVER = 1.01  # a threshold no probability reaches


@dataclass(frozen=True)
class Calibration:
    temperature: float
    thresholds: list[float]  # per label index
    global_threshold: float
    expected_coverage: float  # share of the calibration items that would be accepted
    expected_precision: float  # precision on those items


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


T_MIN, T_MAX = 0.5, 10.0


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [T_MIN, T_MAX] minimising the negative log-likelihood.

    A coarse grid on log T, then a finer one around the best point. The lower bound
    matters: when the holdout is separable (every item right, common with few labels),
    the NLL keeps falling as T → 0 and an unbounded fit saturates every probability to
    0 or 1, which leaves nothing for the thresholds to work with.
    """
    if len(y) == 0:
        return 1.0

    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(y)), y]
        return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())

    grid = np.exp(np.linspace(np.log(T_MIN), np.log(T_MAX), 40))
    best = float(min(grid, key=nll))
    step = (np.log(T_MAX) - np.log(T_MIN)) / 39
    fine = np.exp(np.linspace(np.log(best) - step, np.log(best) + step, 21))
    return float(np.clip(min(fine, key=nll), T_MIN, T_MAX))


def wilson_lower(correct: np.ndarray, total: np.ndarray, z: float) -> np.ndarray:
    total = np.maximum(total, 1)
    p = correct / total
    centre = p + z * z / (2 * total)
    spread = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - spread) / (1 + z * z / total)


def _threshold(conf: np.ndarray, right: np.ndarray, target: float, z: float) -> float:
    """Lowest confidence whose accepted set (conf >= it) has precision bound >= target."""
    if len(conf) == 0:
        return NEVER
    order = np.argsort(-conf, kind="stable")
    c, r = conf[order], right[order].astype(np.float64)
    correct = np.cumsum(r)
    total = np.arange(1, len(c) + 1, dtype=np.float64)
    ok = wilson_lower(correct, total, z) >= target
    # a cut may only fall between different confidences
    boundary = np.append(c[1:] < c[:-1], True)
    ok &= boundary
    if not ok.any():
        return NEVER
    return float(c[np.flatnonzero(ok)[-1]])


def calibrate(logits: np.ndarray, y: np.ndarray, n_labels: int, target: float,
              min_support: int, z: float = 1.0) -> Calibration:
    temperature = fit_temperature(logits, y)
    probs = softmax(logits, temperature) if len(y) else np.zeros((0, n_labels))
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    conf = probs.max(axis=1) if len(y) else np.zeros(0)
    right = pred == y
    global_t = _threshold(conf, right, target, z)
    thresholds = []
    for label in range(n_labels):
        mine = pred == label
        if mine.sum() >= min_support:
            thresholds.append(_threshold(conf[mine], right[mine], target, z))
        else:
            thresholds.append(global_t)
    accepted = conf >= np.asarray(thresholds)[pred] if len(y) else np.zeros(0, dtype=bool)
    coverage = float(accepted.mean()) if len(y) else 0.0
    precision = float(right[accepted].mean()) if accepted.any() else math.nan
    return Calibration(temperature, thresholds, global_t, coverage, precision)
