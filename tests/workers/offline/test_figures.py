"""The backtest's figures: system metrics in the JSON keys, and a "does it pay" verdict that
weighs the teacher saving against the pipeline's running cost and the accuracy given up."""

from __future__ import annotations

import pytest

from distillery.settings import Settings
from workers.offline.backtest import BacktestConfig, HistoryRow, backtest_task
from workers.offline.figures import figures_of


def _run(student_share: float, wrong_share: float = 0.0, volume: float = 1e6,
         price: float = 0.002, n: int = 1000) -> dict:
    history = [HistoryRow(f"r{i}", f"text {i}", "fraud" if i % 50 == 0 else "ok", None)
               for i in range(n)]
    task = backtest_task(history, [], ["fraud"])
    cfg = BacktestConfig(critical=["fraud"], volume_per_day=volume, teacher_cost_per_call=price)
    k, wrong = int(n * student_share), int(n * wrong_share)
    by = ["student"] * k + ["teacher"] * (n - k)
    decided = [("ok" if r.teacher == "fraud" else "spam") if i < wrong else r.teacher
               for i, r in enumerate(history)]
    calls = n - k
    return dict(figures_of(history, task, cfg, Settings(), decided, by, calls, []))


def test_json_keys_hold_the_system_metrics() -> None:
    f = _run(0.8, wrong_share=0.02)
    assert {"coverage", "decided_accuracy", "catch_rate", "accuracy", "macro_f1", "slices",
            "critical_recall", "teacher_call_fraction", "discounted_accuracy"} <= set(f)
    assert f["coverage"] == pytest.approx(0.8)
    assert f["decided_accuracy"] == pytest.approx(1 - 0.02 / 0.8)
    assert f["catch_rate"]["fraud"] == pytest.approx(0.95)  # 1 of 20 decided as "ok"


def test_it_pays_at_volume_and_not_when_the_student_decides_almost_nothing() -> None:
    assert _run(0.8)["economics"]["pays"]
    tiny = _run(0.002)["economics"]
    assert not tiny["pays"] and "decides only" in tiny["verdict"]


def test_the_running_cost_and_the_accuracy_given_up_count() -> None:
    small = _run(0.8, volume=1000, price=0.002)["economics"]  # saves 1.60 < 5.00 a day
    assert not small["pays"] and small["break_even_volume_per_day"] == pytest.approx(3125)
    sloppy = _run(0.8, wrong_share=0.2)["economics"]  # gives up 0.2 > 1 - 0.95
    assert not sloppy["pays"] and "gives up" in sloppy["verdict"]


def test_each_tier_has_its_own_decided_accuracy_and_a_cascade_no_re_decided_curve() -> None:
    history = [HistoryRow(f"r{i}", f"text {i}", "spam" if i == 9 else "ok", None)
               for i in range(10)]
    task = backtest_task(history, [], [], ["ngram", "embed"])
    who = ["tier1"] * 4 + ["tier2"] * 4 + ["teacher"] * 2
    decided = ["ok"] * 4 + ["ok", "ok", "ok", "spam"] + ["ok", "spam"]
    by = ["teacher" if w == "teacher" else "student" for w in who]
    f = figures_of(history, task, BacktestConfig(tiers=["ngram", "embed"]), Settings(), decided,
                   by, 2, [], tiers=who)
    assert f["tier_decided_accuracy"] == {"tier1": 1.0, "tier2": 0.75}
    assert f["tier_shares"] == {"tier1": 0.4, "tier2": 0.4, "teacher": 0.2}
    assert f["curve"] == [] and "--sweep" in f["curve_note"]
