"""From labelled texts to a gated, published student: what ``train`` and the trainer call.

``train_version`` trains, calibrates, exports (with the parity check) and evaluates on a
holdout; ``gate`` decides whether the result may serve; ``publish_and_promote`` stores it in
the registry (every version is kept, passed or not) and promotes it if it passed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.calibrate import Calibration, calibrate, softmax
from models.evaluate import slice_report
from models.export import check_parity, export_onnx
from models.featurize import Featurizer, FeaturizerConfig
from models.registry import Manifest, Registry
from models.runtime import Student
from models.train import TrainConfig, logits_of, train_net

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    task: str
    labels: list[str]
    model: bytes
    calibration: Calibration
    report: dict[str, Any]
    holdout_texts: list[str]
    holdout_labels: list[str]
    featurizer: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    def manifest(self, critical: list[str]) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "critical_labels": [c for c in critical if c in self.labels],
            "thresholds": self.calibration.thresholds,
            "temperature": self.calibration.temperature,
            "calibration": {
                "global_threshold": self.calibration.global_threshold,
                "expected_coverage": self.calibration.expected_coverage,
                "expected_precision": self.calibration.expected_precision,
            },
            "featurizer": self.featurizer,
            "report": self.report,
            "training_data": self.summary,
        }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    serving_report: dict[str, Any] | None = None


def split_holdout(texts: list[str], labels: list[str], fraction: float, seed: int,
                  time_ordered: bool) -> tuple[list[int], list[int]]:
    n = len(texts)
    size = max(1, int(round(n * fraction))) if n > 1 else 0
    order = np.arange(n) if time_ordered else np.random.default_rng(seed).permutation(n)
    return sorted(order[: n - size].tolist()), sorted(order[n - size:].tolist())


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
) -> TrainResult:
    if len(texts) != len(labels):
        raise ConfigError("as many labels as texts are needed")
    if len(set(labels)) < 2:
        raise ConfigError("training needs at least two distinct labels")
    if holdout_texts is None or holdout_labels is None:
        train_idx, hold_idx = split_holdout(texts, labels, holdout_fraction, seed, time_ordered)
        holdout_texts = [texts[i] for i in hold_idx]
        holdout_labels = [labels[i] for i in hold_idx]
        texts, labels = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    featurizer = Featurizer(FeaturizerConfig(buckets=buckets or settings.student_buckets,
                                             max_ids=settings.student_max_ids))
    trained = train_net(featurizer, texts, labels, holdout_texts, holdout_labels,
                        TrainConfig(dim=settings.student_dim, seed=seed), parent_labels)
    index = {name: i for i, name in enumerate(trained.labels)}
    c_texts = calib_texts if calib_texts else holdout_texts
    c_labels = calib_labels if calib_labels else holdout_labels
    c_logits = logits_of(trained.net, featurizer, c_texts)
    cal = calibrate(c_logits, np.array([index[x] for x in c_labels]), len(trained.labels),
                    settings.precision_target, settings.min_class_support,
                    z=settings.calibration_z)
    model = export_onnx(trained.net, cal.temperature)
    parity = check_parity(model, trained.net, cal.temperature, featurizer, holdout_texts[:256])
    h_probs = softmax(logits_of(trained.net, featurizer, holdout_texts), cal.temperature)
    predicted = [trained.labels[i] for i in h_probs.argmax(axis=1)]
    report = slice_report(holdout_labels, predicted, trained.labels, task.critical_labels)
    accepted = h_probs.max(axis=1) >= np.asarray(cal.thresholds)[h_probs.argmax(axis=1)]
    report["coverage"] = float(accepted.mean()) if len(accepted) else 0.0
    report["accepted_accuracy"] = (
        float(np.mean(np.asarray(predicted)[accepted] == np.asarray(holdout_labels)[accepted]))
        if accepted.any() else 0.0
    )
    summary = {
        "n_train": len(texts), "n_holdout": len(holdout_texts), "n_calibration": len(c_texts),
        "label_counts": dict(Counter(labels)), "epochs": trained.epochs_run,
        "best_epoch": trained.best_epoch, "train_seconds": round(trained.seconds, 3),
        "parity_max_abs_diff": parity, "seed": seed,
    }
    return TrainResult(task.name, trained.labels, model, cal, report, holdout_texts,
                       holdout_labels, featurizer.to_dict(), summary)


def _floors(report: dict[str, Any], settings: Settings) -> str | None:
    if report["accuracy"] < settings.min_accuracy:
        return f"accuracy {report['accuracy']:.3f} is under the floor {settings.min_accuracy:.3f}"
    for label, recall in report["critical_recall"].items():
        if report["slices"][label]["support"] and recall < settings.min_critical_recall:
            return (f"critical label {label} recall {recall:.3f} is under the floor "
                    f"{settings.min_critical_recall:.3f}")
    return None


def gate(result: TrainResult, serving: Student | None, settings: Settings,
         task: TaskConfig) -> GateDecision:
    """May this version serve? First versions: the floors. Later: no regression by slice."""
    new = result.report
    if serving is None:
        problem = _floors(new, settings)
        return GateDecision(problem is None, problem or "first version: passes the floors")
    old_pred = serving.predict_many(result.holdout_texts).labels
    old = slice_report(result.holdout_labels, old_pred, result.labels, task.critical_labels)
    if new["accuracy"] < old["accuracy"] - settings.gate_tolerance:
        return GateDecision(False, f"accuracy {new['accuracy']:.3f} is worse than serving "
                            f"{serving.version}'s {old['accuracy']:.3f}", old)
    for label, recall in new["critical_recall"].items():
        if not new["slices"][label]["support"]:
            continue
        before = old["critical_recall"].get(label, 0.0)
        if recall < before - settings.critical_recall_tolerance or (
            recall < before and recall < settings.min_critical_recall
        ):
            return GateDecision(False, f"critical label {label} recall drops from {before:.3f} "
                                f"to {recall:.3f}", old)
    return GateDecision(True, f"no regression against serving {serving.version} "
                        f"(accuracy {old['accuracy']:.3f} → {new['accuracy']:.3f})", old)


def publish_and_promote(result: TrainResult, *, task: TaskConfig, settings: Settings,
                        force: bool = False) -> tuple[Manifest, GateDecision]:
    """Publish the version; promote it if the gate passes (or ``force``)."""
    registry = Registry(settings.registry_root)
    current = registry.serving(task.name)
    serving = (Student.load(current.directory, expected_sha256=current.sha256)
               if current is not None else None)
    decision = GateDecision(True, "forced") if force else gate(result, serving, settings, task)
    data = result.manifest(task.critical_labels)
    data["gate"] = {"passed": decision.passed, "reason": decision.reason}
    manifest = registry.publish(task.name, result.model, data)
    if decision.passed:
        registry.promote(task.name, manifest.version)
    log.info("task %s: %s %s (%s)", task.name, manifest.version,
             "promoted" if decision.passed else "rejected", decision.reason)
    return manifest, decision
