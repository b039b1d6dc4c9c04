"""Serving the student: ``Student.load(dir)`` and ``predict_many(texts)`` through onnxruntime.

A model is refused before a session is created unless the bytes read match the expected
sha256 (given by the caller, e.g. a model announcement, or else the manifest's own).
``routing_policy(fallback_floor)`` is the manifest's routing policy (``models.policy``):
its calibrated thresholds and per-critical-label floors; a manifest written before floors
existed gets ``fallback_floor`` (``settings.critical_floor``) for every critical label.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from distillery.errors import ModelError
from models.featurize import Featurizer
from models.policy import DecisionPolicy, cached_policy, policy_from_manifest

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Predictions:
    labels: list[str]
    label_ids: np.ndarray  # int [n]
    probs: np.ndarray  # float32 [n, k]
    confidence: np.ndarray  # max probability [n]
    margin: np.ndarray  # top-1 minus top-2 probability [n]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ModelError(f"no {MANIFEST_FILE} in {directory}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{directory / MANIFEST_FILE} is not valid JSON: {exc.msg}") from exc


class Student:
    """A loaded, verified student. Construct with ``Student.load``."""

    def __init__(self, session: ort.InferenceSession, manifest: dict[str, Any],
                 batch_size: int = 1024) -> None:
        try:
            self.task: str = str(manifest["task"])
            self.version: str = str(manifest["version"])
            self.labels: list[str] = [str(x) for x in manifest["labels"]]
            thresholds = [float(x) for x in manifest["thresholds"]]
            featurizer = manifest["featurizer"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"manifest lacks or garbles {exc}; refused") from exc
        if len(thresholds) != len(self.labels):
            raise ModelError(f"manifest of {self.version} has {len(thresholds)} thresholds "
                             f"for {len(self.labels)} labels; refused")
        try:
            self._policy = policy_from_manifest(manifest, 1.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"manifest of {self.version} has a garbled policy ({exc}); "
                             "refused") from exc
        thresholds = list(self._policy.thresholds)
        self.session = session
        self.manifest = manifest
        self.critical_labels: list[str] = list(manifest.get("critical_labels", []))
        self.temperature: float = float(manifest.get("temperature", 1.0))
        self.thresholds: dict[str, float] = dict(zip(self.labels, thresholds, strict=True))
        self._threshold_array = np.asarray(thresholds, dtype=np.float32)
        self.featurizer = Featurizer.from_dict(featurizer)
        self.batch_size = max(1, batch_size)
        self._policies: dict[float, DecisionPolicy] = {}

    @classmethod
    def load(cls, path: Path | str, expected_sha256: str | None = None,
             threads: int = 1, batch_size: int = 1024) -> Student:
        """Load a version directory (or its ``.onnx`` file), verifying the checksum first.

        The file's bytes are read once, hashed, compared with ``expected_sha256`` (else the
        manifest's own), and only then handed to onnxruntime: a corrupt, truncated or
        substituted file never reaches a session.
        """
        path = Path(path)
        is_file = path.suffix == ".onnx"
        directory = path.parent if is_file else path
        model_path = path if is_file else directory / MODEL_FILE
        manifest = read_manifest(directory)
        want = expected_sha256 or manifest.get("sha256")
        if not want:
            raise ModelError(f"no sha256 to verify {model_path} against; refused")
        try:
            data = model_path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelError(f"model file {model_path} is missing") from exc
        got = sha256_of(data)
        if got != want:
            raise ModelError(
                f"{model_path} has sha256 {got[:12]}…, expected {str(want)[:12]}… "
                f"({len(data)} bytes): corrupt, truncated or not the announced model; refused"
            )
        if manifest.get("sha256") and manifest["sha256"] != got:
            raise ModelError(f"{model_path} does not match its own manifest's sha256; refused")
        session = _session(data, threads, model_path)
        student = cls(session, manifest, batch_size=batch_size)
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(student.labels):
            raise ModelError(f"{model_path}: the graph has {width} outputs for "
                             f"{len(student.labels)} labels; refused")
        return student

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities float32 [n, labels] (temperature is inside the graph)."""
        parts = []
        for i in range(0, len(texts), self.batch_size):
            ids, mask = self.featurizer.transform(texts[i:i + self.batch_size])
            parts.append(self.session.run(["probs"], {"ids": ids, "mask": mask})[0])
        if not parts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def predict_many(self, texts: list[str]) -> Predictions:
        probs = self.predict_proba(list(texts))
        if probs.shape[1] != len(self.labels):
            raise ModelError(f"model {self.version} gave {probs.shape[1]} probabilities for "
                             f"{len(self.labels)} labels")
        label_ids = probs.argmax(axis=1)
        if probs.shape[1] > 1:
            top2 = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
        else:
            top2 = np.hstack([np.zeros_like(probs), probs])
        return Predictions(
            labels=[self.labels[i] for i in label_ids],
            label_ids=label_ids,
            probs=probs,
            confidence=top2[:, 1],
            margin=top2[:, 1] - top2[:, 0],
        )

    def accepts(self, predictions: Predictions) -> np.ndarray:
        """True where the confidence reaches the predicted class's threshold."""
        return np.asarray(predictions.confidence >= self._threshold_array[predictions.label_ids])

    @property
    def calibrated_floors(self) -> bool:
        """Whether the manifest carries per-label floors (else the fallback applies)."""
        return isinstance(self.manifest.get("policy"), dict) and "floors" in self.manifest[
            "policy"]

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy:
        """Thresholds and floors to route with; ``fallback_floor`` for uncalibrated labels."""
        return cached_policy(self._policies, self.manifest, fallback_floor)


def _session(data: bytes, threads: int, where: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {where}: {exc}") from exc
