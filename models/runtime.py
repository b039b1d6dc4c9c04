"""Serving the student: ``Student.load(dir)`` and ``predict_many(texts)`` through onnxruntime.

A model is refused before a session is created unless the bytes read match the expected
sha256 (given by the caller, e.g. a model announcement, or else the manifest's own).
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
        self.session = session
        self.manifest = manifest
        self.task: str = manifest["task"]
        self.version: str = manifest["version"]
        self.labels: list[str] = list(manifest["labels"])
        self.critical_labels: list[str] = list(manifest.get("critical_labels", []))
        self.thresholds: dict[str, float] = dict(zip(self.labels, manifest["thresholds"],
                                                     strict=True))
        self._threshold_array = np.asarray(manifest["thresholds"], dtype=np.float32)
        self.featurizer = Featurizer.from_dict(manifest["featurizer"])
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path | str, expected_sha256: str | None = None,
             threads: int = 1) -> Student:
        """Load a version directory (or its ``model.onnx``), verifying the checksum first."""
        path = Path(path)
        directory = path.parent if path.suffix == ".onnx" else path
        manifest = read_manifest(directory)
        want = expected_sha256 or manifest.get("sha256")
        if not want:
            raise ModelError(f"no sha256 to verify {directory} against")
        try:
            data = (directory / MODEL_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise ModelError(f"no {MODEL_FILE} in {directory}") from exc
        got = sha256_of(data)
        if got != want:
            raise ModelError(
                f"{directory / MODEL_FILE} has sha256 {got[:12]}…, expected {want[:12]}…: "
                "corrupt, truncated or not the announced model; refused"
            )
        if manifest.get("sha256") and manifest["sha256"] != got:
            raise ModelError(f"{directory} does not match its own manifest; refused")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load {directory / MODEL_FILE}: {exc}") from exc
        student = cls(session, manifest)
        if session.get_outputs()[0].shape[-1] not in (len(student.labels), None, "labels"):
            raise ModelError(f"{directory}: the graph's outputs do not match its label set")
        return student

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), self.batch_size):
            ids, mask = self.featurizer.transform(texts[i:i + self.batch_size])
            parts.append(self.session.run(["probs"], {"ids": ids, "mask": mask})[0])
        if not parts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(parts)

    def predict_many(self, texts: list[str]) -> Predictions:
        probs = self.predict_proba(texts)
        if probs.shape[1] != len(self.labels):
            raise ModelError(f"model {self.version} gave {probs.shape[1]} probabilities for "
                             f"{len(self.labels)} labels")
        label_ids = probs.argmax(axis=1)
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.hstack(
            [np.zeros_like(probs), probs])
        return Predictions(
            labels=[self.labels[i] for i in label_ids],
            label_ids=label_ids,
            probs=probs,
            confidence=top2[:, -1],
            margin=top2[:, -1] - top2[:, -2],
        )

    def accepts(self, predictions: Predictions) -> np.ndarray:
        """True where the confidence reaches the predicted class's threshold."""
        return predictions.confidence >= self._threshold_array[predictions.label_ids]
