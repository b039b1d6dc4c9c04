"""One stage of the cascade: a featuriser, an ONNX head and a calibrated policy, one contract.

The student is a cascade of stages; a task's ``tiers`` names them in order. Every stage is
served the same way:

* a registry version folder (``model.onnx`` + ``manifest.json``, read as a typed
  ``StageManifest``) under ``registry_key(task, stage)``: the task's name for the first
  stage, ``<task>/<stage>`` for a later one (also the ``models`` topic's key);
* one loader (``Stage.load``): the model's bytes are read once, their sha256 checked against
  the announcement (else the manifest), and only then opened in onnxruntime; a graph whose
  output width is not the manifest's label count is refused;
* one contract for routing, calibration, the gate and the reports: ``labels``, ``version``,
  ``predict_many(texts)`` (``Predictions``) and ``routing_policy(fallback_floor)``.

Stages differ only in their featuriser, chosen by the manifest's ``stage``:

* ``ngram`` — hashed character and word n-grams (``models.featurize``) → ``ids``/``mask``;
* ``embed`` — a sentence encoder (``models.embed.encoder``, shared by every task) →
  ``embedding``. Its versions are named ``embed-vNNNN`` in decisions (``stage_version``).

No torch and no ``onnx`` package here: a worker that serves imports this module only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from distillery.errors import ModelError
from models.featurize import Featurizer
from models.policy import DecisionPolicy, cached_policy, policy_from_manifest

if TYPE_CHECKING:
    from models.embed.encoder import TextEncoder

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
STAGES = ("ngram", "embed")  # every stage a task's ``tiers`` may name, in cascade order
FIRST_STAGE = STAGES[0]


def registry_key(task: str, stage: str = FIRST_STAGE) -> str:
    """Where a stage's versions live in the registry, and its ``models`` topic key.

    >>> registry_key("tickets"), registry_key("tickets", "embed")
    ('tickets', 'tickets/embed')
    """
    return task if stage == FIRST_STAGE else f"{task}/{stage}"


def stage_version(stage: str, version: str) -> str:
    """The name a decision's ``model_version`` carries for a stage's registry version.

    >>> stage_version("ngram", "v0003"), stage_version("embed", "v0003")
    ('v0003', 'embed-v0003')
    """
    if stage == FIRST_STAGE or version.startswith(f"{stage}-"):
        return version
    return f"{stage}-{version}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StageManifest(BaseModel):
    """What a stage version's ``manifest.json`` must hold to serve (other keys pass through:
    figures, the gate's verdict, training data). Older manifests say ``tier`` for ``stage``
    and carry no ``policy`` (their thresholds and the fallback floor are the policy)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    task: str
    version: str
    stage: str = FIRST_STAGE
    labels: list[str]
    critical_labels: list[str] = []
    thresholds: list[float]
    temperature: float = 1.0
    policy: dict[str, Any] | None = None
    featurizer: dict[str, Any] | None = None
    sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "stage" not in data and "tier" in data:
            return {**data, "stage": data["tier"]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> StageManifest:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r} (known: {', '.join(STAGES)})")
        if len(self.thresholds) != len(self.labels):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.labels)} "
                             "labels")
        if self.stage == "ngram" and not self.featurizer:
            raise ValueError("an ngram stage needs its featurizer settings")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> StageManifest:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            place = ".".join(str(p) for p in first["loc"]) or "manifest"
            raise ModelError(f"{where}: {place}: {first['msg']}; refused") from exc

    @property
    def data(self) -> dict[str, Any]:
        """Every key, as written (policy readers take the mapping)."""
        return self.model_dump()


def read_manifest(directory: Path) -> dict[str, Any]:
    """A version folder's manifest as written (``StageManifest.parse`` types it)."""
    try:
        return dict(json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ModelError(f"no {MANIFEST_FILE} in {directory}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{directory / MANIFEST_FILE} is not valid JSON: {exc.msg}") from exc


@dataclass(frozen=True)
class Predictions:
    labels: list[str]
    label_ids: np.ndarray  # int [n]
    probs: np.ndarray  # float32 [n, k]
    confidence: np.ndarray  # max probability [n]
    margin: np.ndarray  # top-1 minus top-2 probability [n]

    @classmethod
    def of(cls, probs: np.ndarray, names: list[str]) -> Predictions:
        n, k = probs.shape
        if n == 0:
            empty = np.zeros(0, dtype=np.float32)
            return cls([], np.zeros(0, dtype=np.int64), probs, empty, empty)
        label_ids = probs.argmax(axis=1)
        top2 = (np.partition(probs, k - 2, axis=1)[:, -2:] if k > 1
                else np.hstack([np.zeros_like(probs), probs]))
        return cls([names[i] for i in label_ids], label_ids, probs, top2[:, 1],
                   top2[:, 1] - top2[:, 0])


class Featuriser(Protocol):
    """Texts → the ONNX head's inputs."""

    def features(self, texts: list[str]) -> dict[str, np.ndarray]: ...


class NgramFeatures:
    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer

    def features(self, texts: list[str]) -> dict[str, np.ndarray]:
        ids, mask = self.featurizer.transform(texts)
        return {"ids": ids, "mask": mask}


class EncoderFeatures:
    """The shared sentence encoder's embeddings. Without one, only ready features serve
    (``Stage.predict_features``: the trainer keeps its embeddings)."""

    def __init__(self, encoder: TextEncoder | None, batch_size: int = 32) -> None:
        self.encoder = encoder
        self.batch_size = batch_size

    def features(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.encoder is None:
            raise ModelError("this embed stage was loaded without its sentence encoder")
        vectors = self.encoder.encode(list(texts), self.batch_size)
        # rounded as the trainer's and the backtest's stores keep them (float16): the stage
        # scores in the stream exactly the vectors it was calibrated and gated on
        return {"embedding": vectors.astype(np.float16).astype(np.float32)}


EncoderSource = Callable[[], "TextEncoder"]


def verified_model(directory: Path, expected_sha256: str | None,
                   model_path: Path | None = None) -> tuple[bytes, StageManifest]:
    """The model's bytes and typed manifest, once the bytes match ``expected_sha256`` (else
    the manifest's own) and the manifest its own file: a corrupt, truncated or substituted
    file never reaches onnxruntime."""
    model_path = model_path or directory / MODEL_FILE
    manifest = StageManifest.parse(read_manifest(directory), str(directory / MANIFEST_FILE))
    want = expected_sha256 or manifest.sha256
    if not want:
        raise ModelError(f"no sha256 to verify {model_path} against; refused")
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {model_path} is missing or unreadable: {exc}") from exc
    got = sha256_of(data)
    if got != want:
        raise ModelError(
            f"{model_path} has sha256 {got[:12]}…, expected {str(want)[:12]}… "
            f"({len(data)} bytes): corrupt, truncated or not the announced model; refused")
    if manifest.sha256 and manifest.sha256 != got:
        raise ModelError(f"{model_path} does not match its own manifest's sha256; refused")
    return data, manifest


def open_session(data: bytes, threads: int, where: Path | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {where}: {exc}") from exc


def _check_width(session: ort.InferenceSession, manifest: StageManifest, where: Path) -> None:
    """The graph's ``probs`` output: float32, one column per label."""
    outputs = {o.name: o for o in session.get_outputs()}
    if "probs" not in outputs:
        raise ModelError(f"{where}: the graph has no 'probs' output "
                         f"({', '.join(outputs) or 'none'}); refused")
    if outputs["probs"].type != "tensor(float)":
        raise ModelError(f"{where}: its 'probs' are {outputs['probs'].type}, not float32; "
                         "refused")
    width = outputs["probs"].shape[-1]
    if isinstance(width, int) and width != len(manifest.labels):
        raise ModelError(f"{where}: the graph has {width} outputs for "
                         f"{len(manifest.labels)} labels; refused")


class Stage:
    """A loaded, verified stage version. Construct with ``Stage.load``."""

    def __init__(self, session: ort.InferenceSession, manifest: StageManifest,
                 featuriser: Featuriser, batch_size: int = 1024) -> None:
        try:
            self._policy = policy_from_manifest(manifest.data, 1.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"manifest of {manifest.version} has a garbled policy ({exc}); "
                             "refused") from exc
        self.spec = manifest
        self.manifest = manifest.data
        self.stage = manifest.stage
        self.task = manifest.task
        self.version = stage_version(manifest.stage, manifest.version)
        self.labels = list(manifest.labels)
        self.critical_labels = list(manifest.critical_labels)
        self.temperature = manifest.temperature
        thresholds = list(self._policy.thresholds)
        self.thresholds = dict(zip(self.labels, thresholds, strict=True))
        self._threshold_array = np.asarray(thresholds, dtype=np.float32)
        self.session = session
        self.featuriser = featuriser
        self.batch_size = max(1, batch_size)
        self._policies: dict[float, DecisionPolicy] = {}

    @classmethod
    def load(cls, path: Path | str, expected_sha256: str | None = None, threads: int = 1,
             batch_size: int = 1024, encoder: EncoderSource | None = None) -> Stage:
        """Load a version folder (or its ``.onnx`` file), verifying the checksum first. An
        ``embed`` stage takes its sentence encoder from ``encoder`` (loaded once, shared);
        without it, it scores ready embeddings only (``predict_features``)."""
        path = Path(path)
        directory = path.parent if path.suffix == ".onnx" else path
        model_path = path if path.suffix == ".onnx" else directory / MODEL_FILE
        data, manifest = verified_model(directory, expected_sha256, model_path)
        featuriser: Featuriser
        if manifest.stage == "embed":
            featuriser = EncoderFeatures(encoder() if encoder is not None else None)
        else:
            featuriser = NgramFeatures(Featurizer.from_dict(manifest.featurizer or {}))
        session = open_session(data, threads, model_path)
        _check_width(session, manifest, model_path)
        return cls(session, manifest, featuriser, batch_size=batch_size)

    def predict_features(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities [n, labels] from ready features (the trainer keeps embeddings)."""
        out = self.session.run(["probs"], {k: np.asarray(v) for k, v in feed.items()})[0]
        return np.asarray(out)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities float32 [n, labels] (temperature is inside the graph)."""
        parts = [self.predict_features(self.featuriser.features(texts[i:i + self.batch_size]))
                 for i in range(0, len(texts), self.batch_size)]
        if not parts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def predict_many(self, texts: list[str]) -> Predictions:
        probs = self.predict_proba(list(texts))
        if probs.shape[1] != len(self.labels):
            raise ModelError(f"model {self.version} gave {probs.shape[1]} probabilities for "
                             f"{len(self.labels)} labels")
        return Predictions.of(probs, self.labels)

    def accepts(self, predictions: Predictions) -> np.ndarray:
        """True where the confidence reaches the predicted class's threshold."""
        return np.asarray(predictions.confidence >= self._threshold_array[predictions.label_ids])

    @property
    def calibrated_floors(self) -> bool:
        """Whether the manifest carries per-label floors (else the fallback applies)."""
        return isinstance(self.spec.policy, dict) and "floors" in self.spec.policy

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy:
        """Thresholds and floors to route with; ``fallback_floor`` for uncalibrated labels."""
        return cached_policy(self._policies, self.manifest, fallback_floor)


def verify_version(directory: Path, sha256: str) -> None:
    """Refuse a registry version whose file does not match ``sha256``, whose manifest does
    not type-check, or that onnxruntime cannot open with the manifest's label count (any
    stage; no encoder needed). ``Registry.promote`` and ``rollback`` call it."""
    data, manifest = verified_model(directory, sha256)
    _check_width(open_session(data, 1, directory / MODEL_FILE), manifest,
                 directory / MODEL_FILE)


def encoder_loader(cache_dir: Path, threads: int = 1,
                   precision: str = "int8") -> EncoderSource:
    """A function that loads the sentence encoder once (lazily), then returns the same one."""
    loaded: list[TextEncoder] = []

    def get() -> TextEncoder:
        if not loaded:
            from models.embed.encoder import TextEncoder
            from models.embed.export import ensure_encoder

            loaded.append(TextEncoder.load(ensure_encoder(cache_dir), threads=threads,
                                           precision=precision))
        return loaded[0]

    return get
