"""One refresh: build the dataset, train, calibrate, evaluate by slice, gate, publish, announce.

Shared by the trainer worker, ``replay --retrain`` and the backtest, so that they all train
the same way:

* the dataset is the bootstrap rows plus the store's examples (deduplicated by id;
  feedback's label replaces the teacher's, and contradicted verdicts are counted);
* the held-out verdicts are the newest ``holdout_fraction`` of them (at least
  ``min_calibration`` while that leaves half to train on) plus every older audit: the
  candidate does not train on them, and its policy is calibrated and gated on them
  (``models.pipeline``). Deferred items weigh 1; the audits stand for the region the
  serving student accepts alone — ``A_window / audit_rate`` items, where ``A_window`` is
  the number of audits in the recent window — shared among all held-out audits, so the
  weighted set stands for the recent stream with less variance than the window's few
  audits alone would give (at the price of older audits standing for today's region);
* with fewer than 10 verdicts, a random tenth of the bootstrap is held out instead;
* classes under a minimum share, and the critical labels, are oversampled in training.

``refresh_step`` is the schedule: after a cold start refresh early, then less often — after
``refresh_first_verdicts`` (50) verdicts, then whenever the verdicts have doubled (100, 200,
400, ...) until the step reaches ``refresh_every_verdicts``.
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
from models.evaluate import SliceReport, slice_report
from models.pipeline import GateDecision, publish_and_promote, train_version
from models.policy import CalibrationSample
from models.registry import Manifest, Registry
from workers.trainer.schedule import refresh_step
from workers.trainer.stages import Embedder
from workers.trainer.store import Example

log = logging.getLogger(__name__)

Announce = Callable[[Manifest], None]


@dataclass(frozen=True)
class RefreshConfig:
    holdout_fraction: float = 0.2
    min_calibration: int = 50
    audit_rate: float = 0.02
    max_audits: int = 2000  # older audits held out beside the recent window, newest first
    min_share: float | None = None  # default: half of an even share
    critical_boost: float = 2.0
    max_repeat: int = 10
    seed: int = 0


@dataclass
class Dataset:
    train: list[tuple[str, str]]
    holdout: list[tuple[str, str]]
    weights: list[float]  # per held-out row
    sample: CalibrationSample | None
    gold: list[tuple[str, str]]
    summary: dict[str, Any] = field(default_factory=dict)
    held: list[Example] = field(default_factory=list)  # the held-out verdicts (holdout's rows)


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


def holdout_size(n: int, cfg: RefreshConfig) -> int:
    """Held-out verdicts out of ``n``: the newest fraction, at least ``min_calibration``
    while that leaves half of them to train on; none under 10.

    >>> [holdout_size(n, RefreshConfig()) for n in (5, 50, 100, 400, 3000)]
    [0, 25, 50, 80, 600]
    """
    if n < 10:
        return 0
    return max(int(n * cfg.holdout_fraction), min(cfg.min_calibration, n // 2))


def build_dataset(bootstrap: list[tuple[str, str]], examples: list[Example], task: TaskConfig,
                  cfg: RefreshConfig) -> Dataset:
    ordered = sorted(examples, key=lambda e: e.order)
    n_hold = holdout_size(len(ordered), cfg)
    recent = ordered[len(ordered) - n_hold:] if n_hold else []
    older = ordered[: len(ordered) - n_hold]
    # Every audit is held out (they are few: audit_rate of the accepted items). Together
    # they stand for the accepted items of the recent window: A_window / audit_rate items.
    old_audits = [e for e in older if e.reason == "audit"][-cfg.max_audits:] if recent else []
    held = recent + old_audits
    # per tier: tier 1's audits stand for what tier 1 accepts, tier 2's (the refine
    # worker's, tier2=True) for what tier 1 forwards and tier 2 accepts
    audit_weights = {tier2: _audit_weight(recent, held, tier2, cfg.audit_rate)
                     for tier2 in (False, True)}
    audit_weight = audit_weights[False]
    held_ids = {e.id for e in held}
    train = list(bootstrap) + [(e.text, e.label) for e in older if e.id not in held_ids]
    weights = [audit_weights[e.tier2] if e.reason == "audit" else 1.0 for e in held]
    keep = [i for i, w in enumerate(weights) if w > 0]
    held, weights = [held[i] for i in keep], [weights[i] for i in keep]
    holdout = [(e.text, e.label) for e in held]
    sample = None
    if holdout:
        total, squares = sum(weights), sum(w * w for w in weights)
        audits = sum(e.reason == "audit" for e in held)
        sample = CalibrationSample(
            n=len(held), weight=total, effective_n=total * total / squares, audits=audits,
            deferred=len(held) - audits, gold=sum(e.gold for e in held),
            critical_support={c: sum(e.label == c for e in held)
                              for c in task.critical_labels})
    else:  # too little history: hold out a slice of the bootstrap, at random
        train, holdout = _split_bootstrap(train, cfg.seed)
        weights = [1.0] * len(holdout)
    gold = [(e.text, e.label) for e in examples if e.gold]
    summary = {
        "bootstrap": len(bootstrap), "examples": len(examples), "train": len(train),
        "holdout": len(holdout), "held_out_audits": sample["audits"] if sample else 0,
        "audit_weight": audit_weight, "tier2_audit_weight": audit_weights[True],
        "calibrated_on": "held-out verdicts" if sample
        else "bootstrap slice", "gold": len(gold),
    }
    return Dataset(train, holdout, weights, sample, gold, summary, held if sample else [])


def _audit_weight(recent: list[Example], held: list[Example], tier2: bool,
                  audit_rate: float) -> float:
    """What one held-out audit of this tier weighs: the recent window's audits of the tier
    stand for ``A_window / audit_rate`` items, shared among all its held-out audits."""
    window = sum(e.reason == "audit" and e.tier2 == tier2 for e in recent)
    n = sum(e.reason == "audit" and e.tier2 == tier2 for e in held)
    return window / audit_rate / n if audit_rate > 0 and n else 1.0


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
                 announce: Announce | None = None, embedder: Embedder | None = None,
                 announce_tier2: Announce | None = None) -> RefreshOutcome:
    """One dataset, then each stage of ``task.tiers`` in cascade order. The first stage's
    outcome is the refresh's; each later one's is the report's ``tier<N>`` (it needs an
    ``embedder``; a later stage's failure is recorded there and leaves the stages before
    it standing)."""
    suspect: set[str] = set()
    encoded_before = embedder.encoded if embedder is not None else 0
    if task.cascade and embedder is not None and settings.suspect_verdicts and examples:
        suspect = _suspects(bootstrap, examples, embedder, task.critical_labels)
        examples = [e for e in examples if e.id not in suspect]
    data = build_dataset(bootstrap, examples, task, cfg)
    data.summary["suspect"] = len(suspect)
    train_rows = oversample(data.train, task.critical_labels, cfg.min_share,
                            cfg.critical_boost, cfg.max_repeat)
    first: tuple[Manifest, GateDecision] | None = None
    report: dict[str, Any] = {}
    for position, kind in enumerate(task.tiers):
        if position == 0:
            first, report = _refresh_first_stage(settings, task, data, train_rows,
                                                 contradicted, cfg, announce)
        elif embedder is not None:
            later = _refresh_later_stage(kind, settings, task, data, train_rows, examples,
                                         embedder, announce_tier2)
            # texts this refresh encoded, the suspect check's included
            report[f"tier{position + 1}"] = {**later,
                                             "encoded": embedder.encoded - encoded_before}
    assert first is not None  # tiers start with the first stage (TaskConfig checks it)
    manifest, decision = first
    return RefreshOutcome(decision.passed, manifest.version, decision.reason, report,
                          contradicted)


def _refresh_first_stage(settings: Settings, task: TaskConfig, data: Dataset,
                         train_rows: list[tuple[str, str]], contradicted: int,
                         cfg: RefreshConfig, announce: Announce | None
                         ) -> tuple[tuple[Manifest, GateDecision], dict[str, Any]]:
    """Train, calibrate, gate and publish the first stage (the n-gram student, on texts);
    announce it if it passed. Its manifest and gate decision, and the refresh's report."""
    serving = Registry(settings.registry_root).serving(task.name)
    result = train_version(
        [t for t, _ in train_rows], [y for _, y in train_rows], task=task, settings=settings,
        holdout_texts=[t for t, _ in data.holdout], holdout_labels=[y for _, y in data.holdout],
        holdout_weights=data.weights, sample=data.sample,
        parent_labels=serving.labels if serving else None, seed=cfg.seed,
    )
    # the training counts without oversampling: what the critical-examples rule reads
    result.summary.update(data.summary, contradicted=contradicted,
                          label_counts=dict(sorted(Counter(y for _, y in data.train).items())))
    manifest, decision = publish_and_promote(result, task=task, settings=settings)
    report = {"holdout": result.report, "dataset": data.summary,
              "system": result.system.as_dict(),
              "serving_system": (decision.serving_system.as_dict()
                                 if decision.serving_system else None),
              "floors": dict(result.calibration.policy.floors),
              "floor_basis": result.calibration.floor_basis}
    if data.gold:
        report["gold"] = _gold_report(settings, task, manifest, data.gold)
    if decision.passed and announce is not None:
        announce(manifest)
    return (manifest, decision), report


def _suspects(bootstrap: list[tuple[str, str]], examples: list[Example],
              embedder: Embedder, critical: list[str]) -> set[str]:
    """The verdicts their nearest neighbours unanimously contradict (``workers.trainer.
    suspects``): held out of this refresh altogether."""
    from workers.trainer.suspects import suspect_ids

    vectors = embedder.embed([e.id for e in examples], [e.text for e in examples])
    boot = embedder.embed(["bootstrap"] * len(bootstrap), [t for t, _ in bootstrap]) \
        if bootstrap else None
    found = suspect_ids(examples, vectors, boot, [y for _, y in bootstrap], critical)
    if found:
        log.info("%d of %d verdicts held out as suspect (their neighbours disagree)",
                 len(found), len(examples))
    return found


def _refresh_later_stage(kind: str, settings: Settings, task: TaskConfig, data: Dataset,
                         train_rows: list[tuple[str, str]], examples: list[Example],
                         embedder: Embedder, announce: Announce | None) -> dict[str, Any]:
    """A stage after the first (``workers.trainer.stages``), from the same dataset: its
    report; a failure is reported, not raised."""
    from workers.trainer.stages import LATER_STAGES

    try:
        return LATER_STAGES[kind](settings, task, train_rows, data.holdout, data.weights,
                                  data.held, {e.text: e.id for e in examples}, embedder,
                                  announce)
    except Exception as exc:  # a later stage failing leaves the stages before it standing
        log.exception("task %s: the %s stage's refresh failed", task.name, kind)
        return {"promoted": False, "version": None,
                "reason": f"failed: {type(exc).__name__}: {exc}"[:500]}


def _gold_report(settings: Settings, task: TaskConfig, manifest: Manifest,
                 gold: list[tuple[str, str]]) -> SliceReport:
    student = Registry(settings.registry_root).load_student(task.name, manifest.version)
    predicted = student.predict_many([t for t, _ in gold]).labels
    return slice_report([y for _, y in gold], predicted, student.labels, task.critical_labels)


def stamp() -> str:
    return datetime.now(UTC).isoformat()


def refresh_config(settings: Settings, seed: int = 0,
                   task: TaskConfig | None = None) -> RefreshConfig:
    """The refresh configuration every caller uses (worker, replay, backtest). An audit
    stands for ``1/audit_rate`` items at the rate the task was audited at: its own
    ``policy.audit_rate`` where its table sets one, as the workers route with."""
    rate = settings.audit_rate
    if task is not None and task.policy.audit_rate is not None:
        rate = task.policy.audit_rate
    return RefreshConfig(min_calibration=settings.min_calibration, audit_rate=rate, seed=seed)


__all__ = ["GateDecision", "RefreshConfig", "RefreshOutcome", "build_dataset", "holdout_size",
           "oversample", "refresh_config", "refresh_once", "refresh_step", "stamp"]
