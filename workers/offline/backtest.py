"""``distillery backtest``: a recorded history through the real routing, student and trainer.

Items go through in the file's order (or shuffled with a seed), in micro-batches as a stream
would see them: the student (if any) routes each batch with the same ``route_batch`` the
classify worker uses; whatever goes to the teacher is answered from the recorded teacher
column and becomes a verdict; the same ``refresh_once`` the trainer uses trains, gates and
maybe promotes a new student, on the trainer's schedule (``refresh_step``: early after a
cold start, then every ``retrain_every`` verdicts). The figures (``BacktestFigures``, built
by ``workers.offline.figures``) are the system metrics of ``models.system`` against the "do
nothing, call the teacher for everything" baseline, the calls-vs-accuracy curve over the
accuracy target, and the "does distillation pay" verdict.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import DEFAULT_TIERS, LabelSpec, TaskConfig
from models.data import read_rows
from models.policy import DecisionPolicy
from models.registry import Registry
from schemas.records import Decision, TeacherRequest, TextItem
from streams.decode import Item, RawEvent
from streams.routing import Policy, Routed, StudentLike, route_batch
from workers.offline.embedcache import TextEmbeddings
from workers.offline.figures import BacktestFigures, Served, figures_of
from workers.trainer.refresh import refresh_config, refresh_once, refresh_step
from workers.trainer.store import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryRow:
    id: str
    text: str
    teacher: str
    gold: str | None


@dataclass
class BacktestConfig:
    retrain_every: int | None = None  # None: settings.refresh_every_verdicts
    critical: list[str] = field(default_factory=list)
    audit_rate: float = 0.02
    critical_floor: float = 0.2
    batch_size: int = 64
    volume_per_day: float | None = None  # None: the history's size
    teacher_cost_per_call: float | None = None  # None: estimated from the token prices
    seed: int = 0
    tiers: list[str] = field(default_factory=lambda: list(DEFAULT_TIERS))


def _column(rows: list[dict[str, str]], name: str, path: Path) -> None:
    if rows and name not in rows[0]:
        raise ConfigError(f"{path} has no column {name!r}; columns: {', '.join(rows[0])}")


def load_history(path: Path, text_col: str, id_col: str | None, teacher_col: str,
                 gold_col: str | None) -> list[HistoryRow]:
    """The history's rows; a row with a blank text is skipped with a warning (a stream
    dead-letters such an event as ``invalid``: it never reaches the student or the teacher)."""
    rows = read_rows(path)
    for col in (text_col, teacher_col, *(c for c in (id_col, gold_col) if c)):
        _column(rows, col, path)
    history = [
        HistoryRow(str(r[id_col]) if id_col else f"row-{i}", str(r[text_col] or ""),
                   str(r[teacher_col]), str(r[gold_col]) if gold_col else None)
        for i, r in enumerate(rows)
    ]
    kept = [row for row in history if row.text.strip()]
    if len(kept) < len(history):
        blank = [row.id for row in history if not row.text.strip()]
        log.warning("%s: %d rows with a blank text skipped (a stream dead-letters them): %s",
                    path, len(blank), ", ".join(blank[:5]) + (" ..." if len(blank) > 5 else ""))
    return kept


def backtest_task(history: list[HistoryRow], bootstrap: list[tuple[str, str]],
                  critical: list[str], tiers: list[str] | None = None) -> TaskConfig:
    names = sorted({r.teacher for r in history} | {y for _, y in bootstrap})
    unknown = [c for c in critical if c not in names]
    if unknown:
        raise ConfigError(f"--critical names labels not in the history: {', '.join(unknown)}")
    return TaskConfig(name="backtest", schema="text", tiers=tiers or list(DEFAULT_TIERS),  # type: ignore[arg-type]
                      labels=[LabelSpec(name=n, critical=n in critical) for n in names])


class _Recording:
    """A student that remembers the probabilities of its last batch (for the curve)."""

    def __init__(self, student: Any) -> None:
        self.student = student
        self.version: str = student.version
        self.labels: list[str] = student.labels
        self.last: np.ndarray | None = None

    def predict_many(self, texts: list[str]) -> Any:
        predictions = self.student.predict_many(texts)
        self.last = np.asarray(predictions.probs, dtype=np.float32)
        return predictions

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy:
        policy: DecisionPolicy = self.student.routing_policy(fallback_floor)
        return policy


class Backtest:
    def __init__(self, settings: Settings, history: list[HistoryRow],
                 bootstrap: list[tuple[str, str]], cfg: BacktestConfig,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.history = history
        self.bootstrap = bootstrap
        self.cfg = cfg
        self.every = cfg.retrain_every or settings.refresh_every_verdicts
        self.task = backtest_task(history, bootstrap, cfg.critical, cfg.tiers)
        self.progress = progress or (lambda done, state: None)
        self.examples: list[Example] = []
        self.student: _Recording | None = None
        self.refreshes: list[dict[str, Any]] = []
        self.served: list[Served] = []
        self._done = 0
        self.tier2: StudentLike | None = None
        self.embeddings: TextEmbeddings | None = (
            TextEmbeddings(settings) if self.task.cascade else None)

    def _refresh(self) -> None:
        outcome = refresh_once(self.settings, self.task, self.bootstrap, self.examples, 0,
                               refresh_config(self.settings, self.cfg.seed, self.task),
                               embedder=self.embeddings)
        tier2 = outcome.report.get("tier2")
        self.refreshes.append({"at_item": self._done, "verdicts": len(self.examples),
                               **outcome.as_dict(), **({"tier2": {
                                   k: tier2.get(k) for k in ("promoted", "version", "reason",
                                                             "encoded", "shares")}}
                                   if tier2 else {})})
        if tier2 and tier2.get("promoted") and self.embeddings is not None:
            self.tier2 = self.embeddings.student(self.settings, self.task.name)
        if outcome.promoted:
            registry = Registry(self.settings.registry_root)
            self.student = _Recording(registry.load_student(
                self.task.name, threads=self.settings.student_threads))
            self.served.append(Served(self.student.version, self._done,
                                      registry.show(self.task.name).data, []))

    def run(self) -> BacktestFigures:
        policy = Policy(self.cfg.audit_rate, self.cfg.critical_floor)
        if self.bootstrap:
            self._refresh()
        decided: list[str] = []
        by: list[str] = []
        tiers: list[str] = []  # who decided each item: tier1, tier2 or teacher
        calls, pending = 0, 0
        for start in range(0, len(self.history), self.cfg.batch_size):
            chunk = self.history[start:start + self.cfg.batch_size]
            items = [Item(TextItem(id=r.id, text=r.text), r.text,
                          RawEvent("history", 0, i, None, None))
                     for i, r in enumerate(chunk, start=start)]
            student: StudentLike | None = self.student
            routed_batch = route_batch(self.task, student, items, policy)
            if self.student is not None and self.student.last is not None:
                self.served[-1].probs.append(self.student.last)
            refined = self._tier2(routed_batch, policy)
            for row, routed in zip(chunk, routed_batch, strict=True):
                decision, request = routed.decision, routed.request
                tier = "tier1"
                if row.id in refined:  # tier 1 forwarded it and a tier-2 version serves
                    decision, request = refined[row.id]
                    tier = "tier2"
                if request is not None:
                    calls += 1
                    pending += 1
                    self.examples.append(Example(row.id, row.text, row.teacher, "verdict",
                                                 request.reason, False, len(self.examples),
                                                 request.tier2_version is not None))
                if decision is not None:
                    decided.append(decision.label)
                    by.append("student")
                    tiers.append(tier)
                else:
                    decided.append(row.teacher)
                    by.append("teacher")
                    tiers.append("teacher")
            self._done = start + len(chunk)
            if pending >= refresh_step(len(self.examples) - pending,
                                       self.settings.refresh_first_verdicts, self.every):
                pending = 0
                self._refresh()
            self.progress(self._done, {"student_share": by.count("student") / self._done,
                                       "teacher_calls": calls, "refreshes": len(self.refreshes)})
        return figures_of(self.history, self.task, self.cfg, self.settings, decided, by,
                          calls, self.refreshes, self.served, tiers)

    def _tier2(self, routed: list[Routed], policy: Policy
               ) -> dict[str, tuple[Decision | None, TeacherRequest | None]]:
        """Tier 2 over what tier 1 sends to ``refine``, with the refine worker's own routing
        (``streams.refine.route_requests``); by id. Empty with no tier-2 version."""
        ask = [r.request for r in routed if r.request is not None and r.destination == "refine"]
        if self.tier2 is None or not ask:
            return {}
        from streams.refine import route_requests

        out = route_requests(self.task, self.tier2, ask, policy)
        return {req.id: pair for req, pair in zip(ask, out, strict=True)}


def run_backtest(settings: Settings, history: list[HistoryRow], bootstrap: list[tuple[str, str]],
                 cfg: BacktestConfig, shuffle: int | None = None,
                 progress: Callable[[int, dict[str, Any]], None] | None = None
                 ) -> BacktestFigures:
    if shuffle is not None:
        history = history[:]
        random.Random(shuffle).shuffle(history)
    with tempfile.TemporaryDirectory(prefix="distillery-backtest-") as tmp:
        local = settings.model_copy(update={"registry_root": Path(tmp) / "registry"})
        backtest = Backtest(local, history, bootstrap, cfg, progress)
        try:
            return backtest.run()
        finally:
            if backtest.embeddings is not None:
                backtest.embeddings.close()
