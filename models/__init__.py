"""The student: featurizer, torch network and training, calibration, ONNX export,
onnxruntime serving, slice evaluation and the versioned registry. No Kafka here."""

from models.data import Labelled, read_labelled
from models.evaluate import report_table, slice_report
from models.featurize import Featurizer, FeaturizerConfig
from models.pipeline import (
    GateDecision,
    TrainResult,
    evaluate_student,
    gate,
    publish_and_promote,
    train_version,
)
from models.registry import Manifest, Registry
from models.runtime import Predictions, Student

__all__ = [
    "Featurizer",
    "FeaturizerConfig",
    "GateDecision",
    "Labelled",
    "Manifest",
    "Predictions",
    "Registry",
    "Student",
    "TrainResult",
    "evaluate_student",
    "gate",
    "publish_and_promote",
    "read_labelled",
    "report_table",
    "slice_report",
    "train_version",
]
