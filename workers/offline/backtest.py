"""``distillery backtest``: a recorded history through the real routing, student and trainer.

Items go through in the file's order (or shuffled with a seed), in micro-batches as a stream
would see them: the student (if any) routes each batch with the same ``route_batch`` the
classify worker uses; whatever goes to the teacher is answered from the recorded teacher
column and becomes a verdict; every ``retrain_every`` verdicts the same ``refresh_once`` the
trainer uses trains, gates and maybe promotes a new student. The figures are compared with
the "do nothing, call the teacher for everything" baseline.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from models.data import read_rows
from models.evaluate import slice_report
from models.registry import Registry
from schemas.records import TextItem
from streams.decode import Item, RawEvent
from streams.routing import Policy, StudentLike, route_batch
from workers.trainer.refresh import RefreshConfig, refresh_once
from workers.trainer.store import Example

LAMBDAS = ("0.05", "0.1", "0.2", "0.3")


@dataclass(frozen=True)
class HistoryRow:
    id: str
    text: str
    teacher: str
    gold: str | None


@dataclass
class BacktestConfig:
    retrain_every: int = 1000
    critical: list[str] = field(default_factory=list)
    audit_rate: float = 0.02
    critical_floor: float = 0.2
    batch_size: int = 64
    volume_per_day: float | None = None
    teacher_cost_per_call: float | None = None
    seed: int = 0


def _column(rows: list[dict[str, str]], name: str, path: Path) -> None:
    if rows and name not in rows[0]:
        raise ConfigError(f"{path} has no column {name!r}; columns: {', '.join(rows[0])}")


def load_history(path: Path, text_col: str, id_col: str | None, teacher_col: str,
                 gold_col: str | None) -> list[HistoryRow]:
    rows = read_rows(path)
    for col in (text_col, teacher_col, *(c for c in (id_col, gold_col) if c)):
        _column(rows, col, path)
    return [
        HistoryRow(str(r[id_col]) if id_col else f"row-{i}", str(r[text_col]),
                   str(r[teacher_col]), str(r[gold_col]) if gold_col else None)
        for i, r in enumerate(rows)
    ]


def backtest_task(history: list[HistoryRow], bootstrap: list[tuple[str, str]],
                  critical: list[str]) -> TaskConfig:
    names = sorted({r.teacher for r in history} | {y for _, y in bootstrap})
    unknown = [c for c in critical if c not in names]
    if unknown:
        raise ConfigError(f"--critical names labels not in the history: {', '.join(unknown)}")
    return TaskConfig(name="backtest", schema="text",
                      labels=[LabelSpec(name=n, critical=n in critical) for n in names])


class Backtest:
    def __init__(self, settings: Settings, history: list[HistoryRow],
                 bootstrap: list[tuple[str, str]], cfg: BacktestConfig,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.history = history
        self.bootstrap = bootstrap
        self.cfg = cfg
        self.task = backtest_task(history, bootstrap, cfg.critical)
        self.progress = progress or (lambda done, state: None)
        self.examples: list[Example] = []
        self.student: StudentLike | None = None
        self.refreshes: list[dict[str, Any]] = []

    def _refresh(self) -> None:
        outcome = refresh_once(self.settings, self.task, self.bootstrap, self.examples, 0,
                               RefreshConfig(seed=self.cfg.seed,
                                             min_calibration=self.settings.min_calibration))
        self.refreshes.append({"at_item": self._done, **outcome.as_dict()})
        if outcome.promoted:
            self.student = Registry(self.settings.registry_root).load_student(
                self.task.name, threads=self.settings.student_threads)

    def run(self) -> dict[str, Any]:
        policy = Policy(self.cfg.audit_rate, self.cfg.critical_floor)
        self._done = 0
        if self.bootstrap:
            self._refresh()
        decided, by, calls, pending = [], [], 0, 0
        for start in range(0, len(self.history), self.cfg.batch_size):
            chunk = self.history[start:start + self.cfg.batch_size]
            items = [Item(TextItem(id=r.id, text=r.text), r.text, RawEvent("history", 0, i, None,
                                                                            None))
                     for i, r in enumerate(chunk, start=start)]
            for row, routed in zip(chunk, route_batch(self.task, self.student, items, policy),
                                   strict=True):
                if routed.request is not None:
                    calls += 1
                    pending += 1
                    self.examples.append(Example(row.id, row.text, row.teacher, "verdict",
                                                 routed.request.reason, False,
                                                 len(self.examples)))
                if routed.decision is not None:
                    decided.append(routed.decision.label)
                    by.append("student")
                else:
                    decided.append(row.teacher)
                    by.append("teacher")
            self._done = start + len(chunk)
            if pending >= self.cfg.retrain_every:
                pending = 0
                self._refresh()
            self.progress(self._done, {"student_share": by.count("student") / self._done,
                                       "teacher_calls": calls, "refreshes": len(self.refreshes)})
        return self._figures(decided, by, calls)

    def _figures(self, decided: list[str], by: list[str], calls: int) -> dict[str, Any]:
        return figures_of(self.history, self.task, self.cfg, decided, by, calls, self.refreshes)

def _economics(cfg: BacktestConfig, fraction: float) -> dict[str, Any]:
    volume, price = cfg.volume_per_day, cfg.teacher_cost_per_call
    if volume is None or price is None:
        return {}
    baseline = volume * price
    distilled = volume * fraction * price
    return {"volume_per_day": volume, "teacher_cost_per_call": price,
            "teacher_only_cost_per_day": baseline, "distilled_cost_per_day": distilled,
            "saving_per_day": baseline - distilled}


def figures_of(history: list[HistoryRow], task: TaskConfig, cfg: BacktestConfig,
               decided: list[str], by: list[str], calls: int,
               refreshes: list[dict[str, Any]]) -> dict[str, Any]:
    """The backtest's figures from the final decision per item and the teacher calls made."""
    n = len(history)
    truth = [r.gold if r.gold is not None else r.teacher for r in history]
    report = slice_report(truth, decided, task.label_names, cfg.critical)
    teacher_only = slice_report(truth, [r.teacher for r in history], task.label_names,
                                cfg.critical)
    fraction = calls / n if n else 0.0
    return {
        "n": n,
        "teacher_call_fraction": fraction,
        "student_share": by.count("student") / n if n else 0.0,
        "accuracy": report["accuracy"],
        "teacher_only_accuracy": teacher_only["accuracy"],
        "accuracy_against": "gold" if history and history[0].gold is not None else "teacher",
        "macro_f1": report["macro_f1"],
        "discounted_accuracy": {lam: report["accuracy"] - float(lam) * fraction
                                for lam in LAMBDAS},
        "teacher_only_discounted_accuracy": {lam: teacher_only["accuracy"] - float(lam)
                                             for lam in LAMBDAS},
        "slices": report["slices"],
        "critical_recall": report["critical_recall"],
        "models_promoted": sum(1 for r in refreshes if r["promoted"]),
        "refreshes": [{k: v for k, v in r.items() if k != "report"} for r in refreshes],
        "economics": _economics(cfg, fraction),
    }


def run_backtest(settings: Settings, history: list[HistoryRow], bootstrap: list[tuple[str, str]],
                 cfg: BacktestConfig, shuffle: int | None = None,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    if shuffle is not None:
        history = history[:]
        random.Random(shuffle).shuffle(history)
    with tempfile.TemporaryDirectory(prefix="distillery-backtest-") as tmp:
        local = settings.model_copy(update={"registry_root": Path(tmp) / "registry"})
        return Backtest(local, history, bootstrap, cfg, progress).run()
