"""Training an ``embed`` stage version: head on embeddings, calibrated policy, ONNX, registry.

``fit_embed`` trains the linear head (``models.embed.head``) on embeddings of the labelled
texts, calibrates its policy with ``models.calibrate.calibrate_policy`` on held-out items
(the ones the stages before forward: this stage only ever sees those), exports the head with the
temperature inside and checks onnxruntime against numpy. ``publish_embed`` stores it under
``<task>/embed`` in the registry and promotes it if asked. Its manifest is every stage's
(``models.pipeline.manifest_data``). Training side: imports torch (through the head) and
``onnx``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillery.settings import Settings
from models.calibrate import Calibration, calibrate_policy
from models.embed.head import check_head_parity, export_head, scores, train_head
from models.embed.memory import RADII, Memory, build_memory
from models.pipeline import manifest_data, unweighted_sample
from models.policy import CalibrationSample
from models.registry import Manifest, Registry
from models.stage import registry_key


@dataclass(frozen=True)
class EmbedResult:
    model: bytes  # the head's ONNX file
    calibration: Calibration
    labels: list[str]
    critical: list[str]
    n_train: int
    memory: Memory | None = None  # the verdict memory inside the head, if calibration chose it
    radii: dict[str, float | None] | None = None  # coverage each radius gave at the target

    def manifest(self) -> dict[str, Any]:
        m = self.calibration.metrics
        return manifest_data(
            "embed", self.labels, self.critical, self.calibration,
            metrics={"coverage": m.coverage, "decided_accuracy": m.decided_accuracy,
                     "system_accuracy": m.system_accuracy, "catch_rate": m.catch_rate},
            training_data={"n_train": self.n_train, "n_holdout": m.n},
            memory=None if self.memory is None else {
                "rows": len(self.memory.labels), "k": self.memory.k,
                "radius": self.memory.radius, "weight": self.memory.weight},
            memory_radii=self.radii)


def class_weights(y: np.ndarray, k: int, max_weight: float = 20.0) -> np.ndarray:
    counts = np.bincount(y, minlength=k).astype(np.float64)
    median = float(np.median(counts[counts > 0])) if (counts > 0).any() else 1.0
    return np.clip(median / np.maximum(counts, 1.0), 1.0, max_weight)


def fit_embed(train_x: np.ndarray, train_y: np.ndarray, hold_x: np.ndarray,
              hold_y: np.ndarray, labels: Sequence[str], critical: Sequence[str],
              settings: Settings, *, weights: np.ndarray | None = None,
              sample: CalibrationSample | None = None, threads: int = 1,
              memory_texts: Sequence[str] | None = None) -> EmbedResult:
    """Head on ``train_x`` (embeddings), policy calibrated on ``hold_x`` (what the stages
    before forward of the held-out items), exported and parity-checked. With
    ``memory_texts`` (the texts of ``train_x``'s rows) the head may carry a verdict memory
    (``models.embed.memory``) if calibration finds that it decides more."""
    names = list(labels)
    crit = [c for c in critical if c in names]
    k = len(names)
    head = train_head(train_x, train_y, k, class_weight=class_weights(train_y, k),
                      threads=threads)
    memory = build_memory(train_x, train_y, list(memory_texts), k) if memory_texts else None
    hold_sample = sample or unweighted_sample([names[int(i)] for i in hold_y], crit)

    def calibrated(mem: Memory | None) -> Calibration:
        return calibrate_policy(
            scores(head, hold_x, mem), hold_y, weights, names, crit,
            accuracy_target=settings.accuracy_target,
            catch_target=settings.critical_catch_target, z=settings.calibration_z,
            min_support=settings.min_class_support,
            conservative_floor=settings.critical_floor_conservative, sample=hold_sample,
            certify=settings.calibration_cross_fit)

    chosen, cal, radii = _choose_memory(memory, calibrated)
    model = export_head(head, cal.temperature, chosen)
    check_head_parity(model, head, cal.temperature,
                      hold_x[:256] if len(hold_x) else train_x[:256], memory=chosen,
                      tolerance=1e-4 if chosen is not None else 1e-5)
    return EmbedResult(model, cal, names, crit, len(train_y), chosen, radii)


def _choose_memory(memory: Memory | None, calibrated: Callable[[Memory | None], Calibration]
                   ) -> tuple[Memory | None, Calibration, dict[str, float | None]]:
    """The verdict memory's radius, calibrated like a threshold: of no memory and each radius
    in ``RADII``, the one whose calibrated policy decides the most held-out weight (ties go
    to no memory, then to the larger radius)."""
    best_memory, best = None, calibrated(None)
    radii: dict[str, float | None] = {"none": best.metrics.coverage}
    for radius in sorted(RADII, reverse=True) if memory is not None else ():
        candidate = memory.with_radius(radius)  # type: ignore[union-attr]
        cal = calibrated(candidate)
        radii[str(radius)] = cal.metrics.coverage
        if cal.metrics.coverage > best.metrics.coverage:
            best_memory, best = candidate, cal
    return best_memory, best, radii


def publish_embed(registry: Registry, task: str, result: EmbedResult, *, promote: bool,
                  gate: dict[str, Any] | None = None) -> Manifest:
    """Store the version under ``<task>/embed``; promote it when ``promote``."""
    key = registry_key(task, "embed")
    data = result.manifest()
    if gate is not None:
        data["gate"] = gate
    manifest = registry.publish(key, result.model, data)
    if promote:
        registry.promote(key, manifest.version)
    return manifest
