"""``backtest --sweep``: measured calls-vs-accuracy curves, and tier 1 against the cascade
at the same accuracy.

Each system calibrates its thresholds to the *decided part's* accuracy target, so at one
target a cascade, which decides more, lands at a lower *system* accuracy than tier 1 alone:
comparing the two runs at one target compares two points of different accuracy. Here each
system runs the whole history once per target (real runs — every version trained on the
verdicts its own policy produced, not the counterfactual curve of ``figures.curve_of``), and
each cascade point is matched with tier 1's measured curve **at the cascade's system
accuracy**: tier 1's teacher calls there are interpolated along its frontier (the measured
points no other point beats on both calls and accuracy: the best tier 1 was seen to do,
which favours tier 1). A catch rate does not move smoothly with the target (one item of
a rare label is a point of it), so the cascade's is compared with the lower of tier 1's two
measured runs around that accuracy: "no lower" means within what tier 1 itself gave there.
A cascade point outside tier 1's measured accuracy range is not matched (None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypedDict

from distillery.settings import Settings
from workers.offline.backtest import BacktestConfig, HistoryRow, run_backtest
from workers.offline.figures import BacktestFigures


class SweepPoint(TypedDict):
    target: float  # the decided part's accuracy target the run used
    teacher_call_fraction: float
    system_accuracy: float  # against gold where known (the backtest's ``accuracy``)
    coverage: float
    decided_accuracy: float | None
    catch_rate: dict[str, float | None]
    tier_shares: dict[str, float]
    tier_decided_accuracy: dict[str, float | None]
    models_promoted: int


class Matched(TypedDict):
    target: float  # the cascade point's target
    system_accuracy: float  # the cascade's, where tier 1 is read off
    cascade_calls: float
    tier1_calls: float | None  # tier 1's frontier at that accuracy (None: outside its range)
    saved: float | None  # tier1_calls - cascade_calls (share of the stream)
    cascade_catch: dict[str, float | None]
    tier1_catch: dict[str, float | None]  # the lower of the two runs around that accuracy
    catch_no_lower: bool | None  # every critical label caught at least as often


def point_of(target: float, f: BacktestFigures) -> SweepPoint:
    return SweepPoint(target=target, teacher_call_fraction=f["teacher_call_fraction"],
                      system_accuracy=f["accuracy"], coverage=f["coverage"],
                      decided_accuracy=f["decided_accuracy"], catch_rate=f["catch_rate"],
                      tier_shares=f["tier_shares"],
                      tier_decided_accuracy=f["tier_decided_accuracy"],
                      models_promoted=f["models_promoted"])


def run_sweep(settings: Settings, history: list[HistoryRow], bootstrap: list[tuple[str, str]],
              cfg: BacktestConfig, targets: Sequence[float], shuffle: int | None = None,
              progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
    """The backtest once per accuracy target, with ``cfg``'s tiers."""
    points = []
    for target in sorted(targets):
        run = settings.model_copy(update={"accuracy_target": float(target)})
        f = run_backtest(run, history, bootstrap, cfg, shuffle)
        points.append(point_of(float(target), f))
        if progress is not None:
            progress(f"{','.join(cfg.tiers)} at target {target}: "
                     f"{f['teacher_call_fraction']:.1%} teacher calls, accuracy "
                     f"{f['accuracy']:.4f}")
    return points


def frontier(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The points no other point beats on both teacher calls and system accuracy, by
    rising accuracy (so by rising calls)."""
    keep = [p for p in points if not any(
        q["teacher_call_fraction"] <= p["teacher_call_fraction"]
        and q["system_accuracy"] >= p["system_accuracy"]
        and (q["teacher_call_fraction"], q["system_accuracy"])
        != (p["teacher_call_fraction"], p["system_accuracy"]) for q in points)]
    unique = {(p["system_accuracy"], p["teacher_call_fraction"]): p for p in keep}
    return [unique[k] for k in sorted(unique)]


def _lower(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else min(a, b)


def at_accuracy(points: Sequence[SweepPoint], accuracy: float
                ) -> tuple[float, dict[str, float | None]] | None:
    """Teacher calls along the frontier at ``accuracy`` and, per critical label, the lower
    catch rate of the two runs around it (None outside the frontier's range)."""
    front = frontier(points)
    for lo, hi in zip(front, front[1:], strict=False):
        if lo["system_accuracy"] <= accuracy <= hi["system_accuracy"]:
            span = hi["system_accuracy"] - lo["system_accuracy"]
            t = (accuracy - lo["system_accuracy"]) / span if span > 0 else 0.0
            calls = lo["teacher_call_fraction"] + t * (
                hi["teacher_call_fraction"] - lo["teacher_call_fraction"])
            return calls, {c: _lower(lo["catch_rate"].get(c), hi["catch_rate"].get(c))
                           for c in lo["catch_rate"]}
    if front and abs(front[0]["system_accuracy"] - accuracy) < 1e-12:  # a single point
        return front[0]["teacher_call_fraction"], dict(front[0]["catch_rate"])
    return None


def match(tier1: Sequence[SweepPoint], cascade: Sequence[SweepPoint]) -> list[Matched]:
    """Each cascade point against tier 1's measured curve at the same system accuracy."""
    out = []
    for p in cascade:
        found = at_accuracy(tier1, p["system_accuracy"])
        calls, catch = found if found is not None else (None, {})
        no_lower = None if found is None else _no_lower(p["catch_rate"], catch)
        out.append(Matched(target=p["target"], system_accuracy=p["system_accuracy"],
                           cascade_calls=p["teacher_call_fraction"], tier1_calls=calls,
                           saved=None if calls is None else calls - p["teacher_call_fraction"],
                           cascade_catch=dict(p["catch_rate"]), tier1_catch=catch,
                           catch_no_lower=no_lower))
    return out


def _no_lower(cascade: dict[str, float | None], tier1: dict[str, float | None]) -> bool:
    for label, c in cascade.items():
        t = tier1.get(label)
        if c is not None and t is not None and c < t - 1e-12:
            return False
    return True
