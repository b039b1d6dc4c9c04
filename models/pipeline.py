"""From labelled texts to a gated, published student: what ``train`` and the trainer call.

``train_version`` trains on one set and calibrates the routing policy (temperature,
per-class thresholds, per-critical-label floors: ``models.calibrate``) on held-out items it
did not train on, weighted (an audited verdict stands for ``1/audit_rate`` items); ``gate``
judges the *system* on those items — the decided part and the critical catch rates
(``models.system``), not the bare student's argmax; ``publish_and_promote`` stores the
version (every version is kept, passed or not) and promotes it if it passed.

The gate: every critical label needs ``min_critical_examples`` training examples, else the
version does not serve (and says which label is missing); then ``models.gate.judge``, the
rules every stage is judged by (the first stage's "cascade" is the student alone, each
version judged under its own policy).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.calibrate import Calibration, calibrate_policy, softmax
from models.evaluate import SliceReport, slice_report
from models.export import export_checked
from models.featurize import Featurizer, FeaturizerConfig
from models.gate import fmt, judge
from models.network import StudentNet
from models.policy import CalibrationSample, decide
from models.registry import Manifest, Registry
from models.stage import Stage
from models.system import SystemMetrics, system_metrics
from models.train import TrainConfig, logits_of, train_net

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    task: str
    labels: list[str]
    model: bytes  # the ONNX file, parity-checked
    calibration: Calibration
    report: SliceReport  # argmax slice report on the held-out items, plus coverage
    holdout_texts: list[str]
    holdout_labels: list[str]
    featurizer: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    critical_labels: list[str] = field(default_factory=list)
    net: StudentNet | None = field(default=None, repr=False)  # the torch network, eager
    holdout_weights: list[float] = field(default_factory=list)

    @property
    def system(self) -> SystemMetrics:
        return self.calibration.metrics

    def manifest(self, critical: list[str] | None = None) -> dict[str, Any]:
        critical = self.critical_labels if critical is None else critical
        return manifest_data("ngram", self.labels, critical, self.calibration,
                             featurizer=self.featurizer,
                             metrics=headline(self.report, self.system), report=self.report,
                             training_data=self.summary)


def manifest_data(stage: str, labels: Sequence[str], critical: Sequence[str],
                  calibration: Calibration, **extra: Any) -> dict[str, Any]:
    """What every stage's manifest holds (``models.stage.StageManifest``), plus ``extra``;
    the registry adds task, version, sha256 and parent."""
    cal = calibration
    return {
        "stage": stage,
        "labels": list(labels),
        "critical_labels": [c for c in critical if c in labels],
        "thresholds": cal.thresholds,  # also in "policy"; read by older runtimes
        "temperature": cal.temperature,
        "temperature_in_graph": True,
        "policy": cal.policy_data(),
        "system": cal.metrics.as_dict(),
        **extra,
    }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    serving_system: SystemMetrics | None = None


def headline(report: SliceReport, system: SystemMetrics) -> dict[str, Any]:
    """The figures a manifest and an announcement carry: argmax and system."""
    out: dict[str, Any] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                           "critical_recall": report["critical_recall"],
                           "coverage": system.coverage,
                           "decided_accuracy": system.decided_accuracy,
                           "system_accuracy": system.system_accuracy,
                           "catch_rate": system.catch_rate}
    return out


def split_holdout(texts: list[str], labels: list[str], fraction: float, seed: int,
                  time_ordered: bool = False) -> tuple[list[int], list[int]]:
    """(train, holdout) indices. Stratified: every label with 2+ examples is in both."""
    n = len(texts)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction must be between 0 and 1, got {fraction}")
    if time_ordered:
        size = max(1, int(round(n * fraction))) if n > 1 else 0
        return list(range(n - size)), list(range(n - size, n))
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    hold: list[int] = []
    for label in sorted(by_label):
        members = rng.permutation(by_label[label])
        take = int(round(len(members) * fraction))
        take = min(max(take, 1), len(members) - 1) if len(members) > 1 else 0
        hold.extend(int(i) for i in members[:take])
    chosen = set(hold)
    return [i for i in range(n) if i not in chosen], sorted(hold)


def train_version(
    texts: list[str],
    labels: list[str],
    *,
    task: TaskConfig,
    settings: Settings,
    holdout_texts: list[str] | None = None,
    holdout_labels: list[str] | None = None,
    holdout_weights: Sequence[float] | None = None,
    holdout_fraction: float = 0.1,
    sample: CalibrationSample | None = None,
    parent_labels: list[str] | None = None,
    time_ordered: bool = False,
    seed: int = 0,
    buckets: int | None = None,
    threads: int | None = None,
    train_config: TrainConfig | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train; calibrate the policy on the held-out items (weighted); export; evaluate.

    Without a holdout, a stratified ``holdout_fraction`` of the data is held out (weight 1).
    ``parent_labels`` (the serving version's labels) keep their indices; new labels are
    appended, so the label set only grows. ``threads`` sets ``torch.set_num_threads``.
    """
    if len(texts) != len(labels):
        raise ConfigError("as many labels as texts are needed")
    if len(set(labels)) < 2:
        raise ConfigError("training needs at least two distinct labels")
    if holdout_texts is None or holdout_labels is None:
        train_idx, hold_idx = split_holdout(texts, labels, holdout_fraction, seed, time_ordered)
        holdout_texts = [texts[i] for i in hold_idx]
        holdout_labels = [labels[i] for i in hold_idx]
        texts, labels = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
        holdout_weights = None
    if not holdout_texts:
        raise ConfigError("the holdout is empty: give more data or a holdout file")
    weights = np.ones(len(holdout_texts)) if holdout_weights is None else np.asarray(
        holdout_weights, dtype=np.float64)
    featurizer = Featurizer(FeaturizerConfig(buckets=buckets or settings.student_buckets,
                                             max_ids=settings.student_max_ids))
    config = train_config or TrainConfig(dim=settings.student_dim)
    config = replace(config, seed=seed, threads=threads or config.threads)
    trained = train_net(featurizer, texts, labels, holdout_texts, holdout_labels, config,
                        parent_labels, on_epoch)
    index = {name: i for i, name in enumerate(trained.labels)}
    critical = [c for c in task.critical_labels if c in trained.labels]
    logits = logits_of(trained.net, featurizer, holdout_texts)
    y = np.array([index[x] for x in holdout_labels], dtype=np.int64)
    cal = calibrate_policy(
        logits, y, weights, trained.labels, critical, accuracy_target=settings.accuracy_target,
        catch_target=settings.critical_catch_target, z=settings.calibration_z,
        min_support=settings.min_class_support,
        conservative_floor=settings.critical_floor_conservative,
        sample=sample or unweighted_sample(holdout_labels, critical),
        certify=settings.calibration_cross_fit)
    # float16 embedding table where parity holds (half the file), else float32
    model, parity, weights_type = export_checked(trained.net, cal.temperature, featurizer,
                                                 holdout_texts[:256])
    probs = softmax(logits, cal.temperature)
    decided = decide(probs, cal.policy)
    report = slice_report(holdout_labels, [trained.labels[i] for i in decided.label_ids],
                          trained.labels, critical, accepted=decided.decided.tolist())
    summary = {
        "n_train": len(texts), "n_holdout": len(holdout_texts),
        "label_counts": dict(sorted(Counter(labels).items())),
        "new_labels": [x for x in trained.labels if x not in (parent_labels or trained.labels)],
        "epochs": trained.epochs_run, "best_epoch": trained.best_epoch,
        "holdout_loss": round(trained.holdout_loss, 5),
        "train_seconds": round(trained.seconds, 3), "parity_max_abs_diff": parity,
        "weights": weights_type,
        "seed": seed, "threads": config.threads,
    }
    log.info("task %s: trained %s labels on %s texts in %.1f s (%s epochs); on %s held-out "
             "items: coverage %.3f at decided accuracy %s", task.name, len(trained.labels),
             len(texts), trained.seconds, trained.epochs_run, len(holdout_texts),
             cal.metrics.coverage, fmt(cal.metrics.decided_accuracy))
    return TrainResult(task.name, trained.labels, model, cal, report, holdout_texts,
                       holdout_labels, featurizer.to_dict(), summary, critical, trained.net,
                       [float(w) for w in weights])


def unweighted_sample(labels: Sequence[str], critical: Sequence[str]) -> CalibrationSample:
    counts = Counter(labels)
    return CalibrationSample(n=len(labels), weight=float(len(labels)),
                             effective_n=float(len(labels)), audits=0, deferred=len(labels),
                             gold=0, critical_support={c: counts[c] for c in critical})


def missing_critical(result: TrainResult, task: TaskConfig | None,
                     settings: Settings) -> list[str]:
    """Critical labels with fewer than ``min_critical_examples`` training examples."""
    critical = task.critical_labels if task is not None else result.critical_labels
    counts = result.summary.get("label_counts", {})
    return [c for c in critical if counts.get(c, 0) < settings.min_critical_examples]


def serving_system(result: TrainResult, serving: Manifest | Stage, settings: Settings,
                   critical: Sequence[str]) -> tuple[str, SystemMetrics]:
    """The serving version's system figures on the candidate's held-out items."""
    student = serving if isinstance(serving, Stage) else Stage.load(
        serving.directory, expected_sha256=serving.sha256)
    probs = student.predict_proba(result.holdout_texts)
    d = decide(probs, student.routing_policy(settings.critical_floor))
    names = student.labels
    return student.version, system_metrics(
        result.holdout_labels, d.decided, [names[i] for i in d.label_ids], critical=critical,
        weights=result.holdout_weights or None)


def gate(result: TrainResult, serving: Manifest | Stage | None, settings: Settings,
         task: TaskConfig | None = None) -> GateDecision:
    """May this version serve? See the module docstring for the rules."""
    missing = missing_critical(result, task, settings)
    if missing:
        counts = result.summary.get("label_counts", {})
        return GateDecision(False, "not serving until every critical label has "
                            f"{settings.min_critical_examples} training examples: " + ", ".join(
                                f"{c} has {counts.get(c, 0)}" for c in missing))
    new = result.system
    withheld = [f"{label} ({basis})" for label, basis in
                result.calibration.floor_basis.items() if basis.startswith("withheld")]
    why = (f"; it decides nothing: too few held-out items of {', '.join(withheld)} to "
           "promise the catch rate" if withheld else "")
    if serving is None:
        verdict = judge(new, new.coverage > 0.0, None, None, None, None, settings)
        return GateDecision(verdict.passed, f"first version: {verdict.reason}{why}")
    critical = task.critical_labels if task is not None else result.critical_labels
    version, old = serving_system(result, serving, settings, critical)
    # the first stage's own decided part is the system's: old is also old_own
    verdict = judge(new, new.coverage > 0.0, None, old, old, version, settings)
    return GateDecision(verdict.passed, verdict.reason + why, old)


def publish_and_promote(result: TrainResult, *, task: TaskConfig, settings: Settings,
                        force: bool = False,
                        registry: Registry | None = None) -> tuple[Manifest, GateDecision]:
    """Publish the version; promote it if the gate passes (or ``force``)."""
    registry = registry or Registry.from_settings(settings)
    current = registry.serving(task.name)
    decision = GateDecision(True, "forced") if force else gate(result, current, settings, task)
    data = result.manifest(task.critical_labels)
    data["gate"] = {"passed": decision.passed, "reason": decision.reason,
                    "against": current.version if current else None,
                    "serving_system": (decision.serving_system.as_dict()
                                       if decision.serving_system else None)}
    manifest = registry.publish(task.name, result.model, data)
    if decision.passed:
        registry.promote(task.name, manifest.version)
    log.info("task %s: %s %s (%s)", task.name, manifest.version,
             "promoted" if decision.passed else "published, not promoted", decision.reason)
    return manifest, decision


def evaluate_student(student: Stage, texts: list[str], labels: list[str],
                     metadata: list[dict[str, str]] | None = None,
                     critical_floor: float = 0.2) -> dict[str, Any]:
    """The slice report of a served student on labelled data, with its system figures."""
    probs = student.predict_proba(texts)
    d = decide(probs, student.routing_policy(critical_floor))
    predicted = [student.labels[i] for i in d.label_ids]
    fields = sorted({k for m in metadata or [] for k in m})
    report = slice_report(labels, predicted, student.labels, student.critical_labels,
                          metadata=metadata, metadata_fields=fields or None,
                          accepted=d.decided.tolist())
    system = system_metrics(labels, d.decided, predicted, critical=student.critical_labels)
    return {**report, "model_version": student.version, "system": system.as_dict(),
            "decided_accuracy": system.decided_accuracy, "catch_rate": system.catch_rate}
