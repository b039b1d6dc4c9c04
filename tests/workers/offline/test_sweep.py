"""``backtest --sweep``'s comparison: tier 1's measured curve read at the cascade's accuracy."""

from __future__ import annotations

import pytest

from workers.offline.sweep import SweepPoint, at_accuracy, frontier, match


def _p(target: float, calls: float, accuracy: float, catch: float | None = 1.0) -> SweepPoint:
    return SweepPoint(target=target, teacher_call_fraction=calls, system_accuracy=accuracy,
                      coverage=1 - calls, decided_accuracy=None, catch_rate={"fraud": catch},
                      tier_shares={}, tier_decided_accuracy={}, models_promoted=1)


def test_the_frontier_drops_points_another_beats_on_calls_and_accuracy() -> None:
    points = [_p(0.9, 0.20, 0.95), _p(0.95, 0.30, 0.97), _p(0.96, 0.35, 0.985),
              _p(0.97, 0.36, 0.984)]  # 0.97: more calls, less accuracy than 0.96
    assert [p["target"] for p in frontier(points)] == [0.9, 0.95, 0.96]


def test_calls_are_interpolated_along_the_frontier_and_catch_is_the_lower_around_it() -> None:
    points = [_p(0.9, 0.20, 0.95, 0.9), _p(0.95, 0.30, 0.97, 1.0)]
    calls, catch = at_accuracy(points, 0.965) or (None, {})
    assert calls == pytest.approx(0.275)
    assert catch["fraud"] == pytest.approx(0.9)  # the lower of the two runs around it
    assert at_accuracy(points, 0.94) is None and at_accuracy(points, 0.98) is None


def test_a_cascade_point_is_matched_at_its_own_accuracy() -> None:
    tier1 = [_p(0.9, 0.20, 0.95, 1.0), _p(0.93, 0.28, 0.97, 0.95)]
    cheaper, caught_less, outside = match(tier1, [_p(0.93, 0.18, 0.96, 1.0),
                                                  _p(0.95, 0.19, 0.96, 0.9),
                                                  _p(0.97, 0.25, 0.99)])
    assert cheaper["tier1_calls"] == pytest.approx(0.24)
    assert cheaper["saved"] == pytest.approx(0.06) and cheaper["catch_no_lower"]
    assert caught_less["catch_no_lower"] is False  # 0.9 < 0.95, the lower around it
    assert outside["tier1_calls"] is None and outside["saved"] is None
    assert outside["catch_no_lower"] is None
