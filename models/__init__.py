"""The student: featurizer, torch network and training, calibration, ONNX export,
onnxruntime serving, slice evaluation and the versioned registry. No Kafka here."""

from models.evaluate import slice_report
from models.featurize import Featurizer, FeaturizerConfig
from models.pipeline import GateDecision, TrainResult, gate, publish_and_promote, train_version
from models.registry import Manifest, Registry
from models.runtime import Predictions, Student

__all__ = [
    "Featurizer",
    "FeaturizerConfig",
    "GateDecision",
    "Manifest",
    "Predictions",
    "Registry",
    "Student",
    "TrainResult",
    "gate",
    "publish_and_promote",
    "slice_report",
    "train_version",
]
