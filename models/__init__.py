"""The student: featurizer, torch network and training, calibration, ONNX export,
onnxruntime serving, slice evaluation and the versioned registry. No Kafka here.

Serving needs no torch: the names below that train (``train_version``, ``publish_and_promote``,
``gate``, ...) load ``models.pipeline`` — and torch — only when first used, so a classify or
teacher worker that imports ``models`` stays small.
"""

from __future__ import annotations

from typing import Any

from models.data import Labelled, read_labelled
from models.evaluate import slice_report
from models.featurize import Featurizer, FeaturizerConfig
from models.registry import Manifest, Registry
from models.stage import Predictions, Stage

_TRAINING = ("GateDecision", "TrainResult", "evaluate_student", "gate", "publish_and_promote",
             "train_version")

__all__ = [
    "Featurizer",
    "FeaturizerConfig",
    "Labelled",
    "Manifest",
    "Predictions",
    "Registry",
    "Stage",
    "read_labelled",
    "slice_report",
    *_TRAINING,
]


def __getattr__(name: str) -> Any:
    if name in _TRAINING:
        from models import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
