"""Serving tier 2: the sentence encoder plus a version's head, as one student tier.

A tier-2 version lives in the registry under ``<task>/embed/vNNNN`` (``registry_key``):
``model.onnx`` is the head (``embedding`` → ``probs``, temperature inside, exported by
``models.embed.head``) and ``manifest.json`` has the labels and the routing ``policy``
(``models.policy``), like a tier-1 manifest. ``EmbedStudent`` answers what routing asks of a
tier (``streams.routing.StudentLike``): ``predict_many(texts).probs`` and
``routing_policy(fallback_floor)``; its ``version`` is ``embed-vNNNN``, the name decisions
carry. Loading reads the head's bytes once, checks their sha256 against the announcement
(else the manifest) and opens them with onnxruntime: no torch, no ``onnx`` package here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from distillery.errors import ModelError
from models.embed.encoder import TextEncoder
from models.policy import DecisionPolicy, cached_policy, policy_from_manifest
from models.runtime import MODEL_FILE, Predictions, read_manifest, sha256_of

TIER = "embed"
VERSION_PREFIX = "embed-"


def registry_key(task: str) -> str:
    """Where a task's tier-2 versions live in the registry, and the ``models`` topic's key
    (and announcement ``task``) for them: ``<task>/embed``."""
    return f"{task}/{TIER}"


def tier_version(version: str) -> str:
    """``v0003`` → ``embed-v0003`` (the name a tier-2 decision's ``model_version`` carries)."""
    return version if version.startswith(VERSION_PREFIX) else VERSION_PREFIX + version


class EmbedStudent:
    """A loaded, verified tier-2 version over a shared encoder."""

    def __init__(self, encoder: TextEncoder, session: ort.InferenceSession,
                 manifest: dict[str, Any], batch_size: int = 32) -> None:
        try:
            self.task = str(manifest["task"])
            self.version = tier_version(str(manifest["version"]))
            self.labels = [str(x) for x in manifest["labels"]]
            self._policy = policy_from_manifest(manifest, 1.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"tier-2 manifest lacks or garbles {exc}; refused") from exc
        self.encoder = encoder
        self.session = session
        self.manifest = manifest
        self.batch_size = batch_size
        self._policies: dict[float, DecisionPolicy] = {}
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ModelError(f"tier-2 head {self.version} has {width} outputs for "
                             f"{len(self.labels)} labels; refused")

    @classmethod
    def load(cls, directory: Path, encoder: TextEncoder, expected_sha256: str | None = None,
             threads: int = 1) -> EmbedStudent:
        manifest = read_manifest(directory)
        want = expected_sha256 or manifest.get("sha256")
        path = directory / MODEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"tier-2 head {path} is unreadable: {exc}") from exc
        if not want or sha256_of(data) != want or manifest.get("sha256") not in (None, want):
            raise ModelError(f"{path} does not match the expected sha256; refused")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
        return cls(encoder, session, manifest)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(list(texts), self.batch_size)

    def predict_embedded(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities [n, labels] from embeddings (the trainer keeps them in its store)."""
        if len(vectors) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = self.session.run(["probs"], {"embedding": vectors.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float32)

    def predict_many(self, texts: list[str]) -> Predictions:
        probs = self.predict_embedded(self.embed(texts))
        label_ids = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        ordered = np.sort(probs, axis=1) if len(probs) else np.zeros((0, 2), np.float32)
        top = ordered[:, -1] if len(probs) else np.zeros(0, np.float32)
        second = ordered[:, -2] if probs.shape[1] > 1 else np.zeros_like(top)
        return Predictions(labels=[self.labels[i] for i in label_ids], label_ids=label_ids,
                           probs=probs, confidence=top, margin=top - second)

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy:
        return cached_policy(self._policies, self.manifest, fallback_floor)


def encoder_loader(cache_dir: Path, threads: int = 1,
                   precision: str = "int8") -> Callable[[], TextEncoder]:
    """A function that loads the encoder once (lazily) and then returns the same one."""
    loaded: list[TextEncoder] = []

    def get() -> TextEncoder:
        if not loaded:
            from models.embed.export import ensure_encoder

            loaded.append(TextEncoder.load(ensure_encoder(cache_dir), threads=threads,
                                           precision=precision))
        return loaded[0]

    return get


def verify_head(manifest: Any) -> None:
    """Refuse a registry version (``models.registry.Manifest``) whose head file does not
    match its sha256 or does not open in onnxruntime (``Registry.promote(verify=...)``)."""
    path = manifest.directory / MODEL_FILE
    data = path.read_bytes()
    if sha256_of(data) != manifest.sha256:
        raise ModelError(f"{path} does not match its manifest's sha256; refused")
    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
