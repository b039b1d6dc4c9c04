"""From labelled texts to a gated, published student: what ``train`` and the trainer call.

``train_version`` trains, calibrates, exports (with the parity check) and evaluates on a
holdout; ``gate`` decides whether the result may serve; ``publish_and_promote`` stores it in
the registry (every version is kept, passed or not) and promotes it if it passed.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.calibrate import Calibration, calibrate, softmax
from models.evaluate import slice_report
from models.export import check_parity, export_onnx
from models.featurize import Featurizer, FeaturizerConfig
from models.network import StudentNet
from models.registry import Manifest, Registry
from models.runtime import Student
from models.train import TrainConfig, logits_of, train_net

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    task: str
    labels: list[str]
    model: bytes  # the ONNX file, parity-checked
    calibration: Calibration
    report: dict[str, Any]  # slice report on the holdout, plus coverage
    holdout_texts: list[str]
    holdout_labels: list[str]
    featurizer: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    critical_labels: list[str] = field(default_factory=list)
    net: StudentNet | None = field(default=None, repr=False)  # the torch network, eager

    def manifest(self, critical: list[str] | None = None) -> dict[str, Any]:
        critical = self.critical_labels if critical is None else critical
        return {
            "labels": self.labels,
            "critical_labels": [c for c in critical if c in self.labels],
            "thresholds": self.calibration.thresholds,
            "temperature": self.calibration.temperature,
            "temperature_in_graph": True,
            "calibration": {
                "global_threshold": self.calibration.global_threshold,
                "expected_coverage": self.calibration.expected_coverage,
                "expected_precision": self.calibration.expected_precision,
            },
            "featurizer": self.featurizer,
            "metrics": _headline(self.report),
            "report": self.report,
            "training_data": self.summary,
        }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    serving_report: dict[str, Any] | None = None


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "critical_recall", "coverage", "accepted_accuracy")
    return {k: report[k] for k in keys if k in report}


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
    holdout_fraction: float = 0.1,
    calib_texts: list[str] | None = None,
    calib_labels: list[str] | None = None,
    parent_labels: list[str] | None = None,
    time_ordered: bool = False,
    seed: int = 0,
    buckets: int | None = None,
    threads: int | None = None,
    train_config: TrainConfig | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train, calibrate (on ``calib_*`` if given, else the holdout), export, evaluate.

    ``parent_labels`` (the serving version's labels) keep their indices; new labels are
    appended, so the label set only grows. ``threads`` sets ``torch.set_num_threads``
    (default: the training config's, 2).
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
    if not holdout_texts:
        raise ConfigError("the holdout is empty: give more data or a holdout file")
    featurizer = Featurizer(FeaturizerConfig(buckets=buckets or settings.student_buckets,
                                             max_ids=settings.student_max_ids))
    config = train_config or TrainConfig(dim=settings.student_dim)
    config = replace(config, seed=seed, threads=threads or config.threads)
    trained = train_net(featurizer, texts, labels, holdout_texts, holdout_labels, config,
                        parent_labels, on_epoch)
    index = {name: i for i, name in enumerate(trained.labels)}
    c_texts = calib_texts if calib_texts else holdout_texts
    c_labels = calib_labels if calib_labels else holdout_labels
    cal = calibrate(logits_of(trained.net, featurizer, c_texts),
                    np.array([index[x] for x in c_labels], dtype=np.int64), len(trained.labels),
                    settings.precision_target, settings.min_class_support,
                    z=settings.calibration_z)
    model = export_onnx(trained.net, cal.temperature)
    parity = check_parity(model, trained.net, cal.temperature, featurizer, holdout_texts[:256])
    h_probs = softmax(logits_of(trained.net, featurizer, holdout_texts), cal.temperature)
    report = _holdout_report(h_probs, holdout_labels, trained.labels, task.critical_labels,
                             np.asarray(cal.thresholds))
    summary = {
        "n_train": len(texts), "n_holdout": len(holdout_texts), "n_calibration": len(c_texts),
        "label_counts": dict(sorted(Counter(labels).items())),
        "new_labels": [x for x in trained.labels if x not in (parent_labels or trained.labels)],
        "epochs": trained.epochs_run, "best_epoch": trained.best_epoch,
        "holdout_loss": round(trained.holdout_loss, 5),
        "train_seconds": round(trained.seconds, 3), "parity_max_abs_diff": parity,
        "seed": seed, "threads": config.threads,
    }
    log.info("task %s: trained %s labels on %s texts in %.1f s (%s epochs), holdout "
             "accuracy %.4f", task.name, len(trained.labels), len(texts), trained.seconds,
             trained.epochs_run, report["accuracy"])
    return TrainResult(task.name, trained.labels, model, cal, report, holdout_texts,
                       holdout_labels, featurizer.to_dict(), summary,
                       [c for c in task.critical_labels if c in trained.labels], trained.net)


def _holdout_report(probs: np.ndarray, truth: list[str], labels: list[str],
                    critical: list[str], thresholds: np.ndarray) -> dict[str, Any]:
    pred_ids = probs.argmax(axis=1)
    predicted = [labels[i] for i in pred_ids]
    accepted = probs.max(axis=1) >= thresholds[pred_ids]
    return slice_report(truth, predicted, labels, critical, accepted=accepted.tolist())


def _floors(report: dict[str, Any], settings: Settings) -> str | None:
    if report["accuracy"] < settings.min_accuracy:
        return f"accuracy {report['accuracy']:.3f} is under the floor {settings.min_accuracy:.3f}"
    for label, recall in report["critical_recall"].items():
        if report["slices"][label]["support"] and recall < settings.min_critical_recall:
            return (f"critical label {label} recall {recall:.3f} is under the floor "
                    f"{settings.min_critical_recall:.3f}")
    return None


def gate(result: TrainResult, serving: Manifest | Student | None, settings: Settings,
         task: TaskConfig | None = None) -> GateDecision:
    """May this version serve? First versions: the absolute floors. Later: no regression
    against the serving version on the same holdout, overall and per critical label."""
    new = result.report
    if serving is None:
        problem = _floors(new, settings)
        return GateDecision(problem is None, problem or "first version: passes the floors")
    student = serving if isinstance(serving, Student) else Student.load(
        serving.directory, expected_sha256=serving.sha256)
    critical = task.critical_labels if task is not None else result.critical_labels
    old_pred = student.predict_many(result.holdout_texts).labels
    old = slice_report(result.holdout_labels, old_pred, result.labels, critical)
    problems = _regressions(new, old, settings)
    if problems:  # every reason, critical slices first
        return GateDecision(False, f"against serving {student.version}: "
                            + "; ".join(problems), old)
    return GateDecision(True, f"no regression against serving {student.version} "
                        f"(accuracy {old['accuracy']:.3f} → {new['accuracy']:.3f})", old)


def _regressions(new: dict[str, Any], old: dict[str, Any], settings: Settings) -> list[str]:
    problems = []
    for label, recall in new["critical_recall"].items():
        if not new["slices"][label]["support"]:
            continue
        before = old["critical_recall"].get(label, 0.0)
        if recall < before - settings.critical_recall_tolerance or (
            recall < before and recall < settings.min_critical_recall
        ):
            problems.append(f"critical label {label} recall drops from {before:.3f} "
                            f"to {recall:.3f}")
    if new["accuracy"] < old["accuracy"] - settings.gate_tolerance:
        problems.append(f"accuracy {new['accuracy']:.3f} is worse than "
                        f"{old['accuracy']:.3f} by more than {settings.gate_tolerance}")
    return problems


def publish_and_promote(result: TrainResult, *, task: TaskConfig, settings: Settings,
                        force: bool = False,
                        registry: Registry | None = None) -> tuple[Manifest, GateDecision]:
    """Publish the version; promote it if the gate passes (or ``force``)."""
    registry = registry or Registry.from_settings(settings)
    current = registry.serving(task.name)
    decision = GateDecision(True, "forced") if force else gate(result, current, settings, task)
    data = result.manifest(task.critical_labels)
    data["gate"] = {"passed": decision.passed, "reason": decision.reason,
                    "against": current.version if current else None}
    manifest = registry.publish(task.name, result.model, data)
    if decision.passed:
        registry.promote(task.name, manifest.version)
    log.info("task %s: %s %s (%s)", task.name, manifest.version,
             "promoted" if decision.passed else "published, not promoted", decision.reason)
    return manifest, decision


def evaluate_student(student: Student, texts: list[str], labels: list[str],
                     metadata: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The slice report of a served student on labelled data, with its coverage."""
    predictions = student.predict_many(texts)
    fields = sorted({k for m in metadata or [] for k in m})
    report = slice_report(labels, predictions.labels, student.labels, student.critical_labels,
                          metadata=metadata, metadata_fields=fields or None,
                          accepted=student.accepts(predictions).tolist())
    report["model_version"] = student.version
    return report
