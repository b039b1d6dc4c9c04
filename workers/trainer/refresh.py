"""One refresh: build the dataset, train, calibrate, evaluate by slice, gate, publish, announce.

Shared by the trainer worker, ``replay --retrain`` and the backtest, so that they all train
the same way:

* the dataset is the bootstrap rows plus the store's examples (deduplicated by id;
  feedback's label replaces the teacher's, and contradicted verdicts are counted);
* the holdout is the newest ``holdout_fraction`` of the examples (time-ordered);
* thresholds are calibrated on the audit verdicts and the feedback gold set when there are
  at least ``min_calibration`` of them (kept out of training for that), else on the holdout;
* classes under a minimum share, and the critical labels, are oversampled in training.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.evaluate import slice_report
from models.pipeline import GateDecision, publish_and_promote, train_version
from models.registry import Manifest, Registry
from workers.trainer.store import Example

log = logging.getLogger(__name__)

Announce = Callable[[Manifest], None]


@dataclass(frozen=True)
class RefreshConfig:
    holdout_fraction: float = 0.15
    min_calibration: int = 50
    min_share: float | None = None  # default: half of an even share
    critical_boost: float = 2.0
    max_repeat: int = 10
    seed: int = 0


@dataclass
class Dataset:
    train: list[tuple[str, str]]
    holdout: list[tuple[str, str]]
    calibration: list[tuple[str, str]]
    gold: list[tuple[str, str]]
    summary: dict[str, Any] = field(default_factory=dict)


def oversample(rows: list[tuple[str, str]], critical: list[str], min_share: float | None,
               boost: float, max_repeat: int) -> list[tuple[str, str]]:
    """Repeat rows of rare classes up to a minimum share; critical labels get ``boost``×.

    >>> rows = [("a", "common")] * 8 + [("b", "rare")] + [("c", "fraud")]
    >>> sorted(Counter(y for _, y in oversample(rows, ["fraud"], 0.2, 3.0, 10)).items())
    [('common', 8), ('fraud', 3), ('rare', 2)]
    """
    counts = Counter(label for _, label in rows)
    if not counts:
        return rows
    share = min_share if min_share is not None else 0.5 / len(counts)
    target = share * len(rows)
    out = list(rows)
    for label, count in counts.items():
        want = max(target, count * boost if label in critical else 0.0)
        repeats = min(max_repeat, int(want // count)) - 1 if count < want else 0
        out += [r for r in rows if r[1] == label] * max(repeats, 0)
    return out


def build_dataset(bootstrap: list[tuple[str, str]], examples: list[Example], task: TaskConfig,
                  cfg: RefreshConfig) -> Dataset:
    ordered = sorted(examples, key=lambda e: e.order)
    n_hold = int(len(ordered) * cfg.holdout_fraction) if len(ordered) >= 20 else 0
    recent = ordered[len(ordered) - n_hold:] if n_hold else []
    older = ordered[: len(ordered) - n_hold]
    unbiased = [e for e in older if e.reason == "audit" or e.gold]
    use_calibration = len(unbiased) >= cfg.min_calibration
    calib_ids = {e.id for e in unbiased} if use_calibration else set()
    train = list(bootstrap) + [(e.text, e.label) for e in older if e.id not in calib_ids]
    holdout = [(e.text, e.label) for e in recent]
    if not holdout:  # too little history: hold out a slice of the bootstrap, at random
        train, holdout = _split_bootstrap(train, cfg.seed)
    calibration = [(e.text, e.label) for e in unbiased] if use_calibration else []
    gold = [(e.text, e.label) for e in examples if e.gold]
    summary = {
        "bootstrap": len(bootstrap), "examples": len(examples), "train": len(train),
        "holdout": len(holdout), "calibration": len(calibration) or len(holdout),
        "calibrated_on": "audit+gold" if calibration else "holdout", "gold": len(gold),
    }
    return Dataset(train, holdout, calibration, gold, summary)


def _split_bootstrap(rows: list[tuple[str, str]], seed: int
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    import random

    if len(rows) < 10:
        raise ConfigError(f"too little data to train: {len(rows)} rows")
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    cut = max(1, len(rows) // 10)
    return shuffled[cut:], shuffled[:cut]


@dataclass(frozen=True)
class RefreshOutcome:
    promoted: bool
    version: str | None
    reason: str
    report: dict[str, Any]
    contradicted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "version": self.version, "reason": self.reason,
                "report": self.report, "contradicted": self.contradicted}


def refresh_once(settings: Settings, task: TaskConfig, bootstrap: list[tuple[str, str]],
                 examples: list[Example], contradicted: int, cfg: RefreshConfig,
                 announce: Announce | None = None) -> RefreshOutcome:
    data = build_dataset(bootstrap, examples, task, cfg)
    train_rows = oversample(data.train, task.critical_labels, cfg.min_share,
                            cfg.critical_boost, cfg.max_repeat)
    serving = Registry(settings.registry_root).serving(task.name)
    result = train_version(
        [t for t, _ in train_rows], [y for _, y in train_rows], task=task, settings=settings,
        holdout_texts=[t for t, _ in data.holdout], holdout_labels=[y for _, y in data.holdout],
        calib_texts=[t for t, _ in data.calibration] or None,
        calib_labels=[y for _, y in data.calibration] or None,
        parent_labels=serving.labels if serving else None, seed=cfg.seed,
    )
    result.summary.update(data.summary, contradicted=contradicted)
    manifest, decision = publish_and_promote(result, task=task, settings=settings)
    report = {"holdout": result.report, "dataset": data.summary}
    if data.gold:
        report["gold"] = _gold_report(settings, task, manifest, data.gold)
    if decision.passed and announce is not None:
        announce(manifest)
    return RefreshOutcome(decision.passed, manifest.version, decision.reason, report,
                          contradicted)


def _gold_report(settings: Settings, task: TaskConfig, manifest: Manifest,
                 gold: list[tuple[str, str]]) -> dict[str, Any]:
    student = Registry(settings.registry_root).load_student(task.name, manifest.version)
    predicted = student.predict_many([t for t, _ in gold]).labels
    return slice_report([y for _, y in gold], predicted, student.labels, task.critical_labels)


def stamp() -> str:
    return datetime.now(UTC).isoformat()


__all__ = ["GateDecision", "RefreshConfig", "RefreshOutcome", "build_dataset", "oversample",
           "refresh_once", "stamp"]
