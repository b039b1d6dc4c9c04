"""One stage abstraction: every stage loads, verifies, predicts and is gated the same way
(``models.stage``, ``models.gate``). Synthetic embeddings: no encoder download, no broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillery.errors import ModelError
from distillery.settings import Settings
from models.embed.fit import fit_embed, publish_embed
from models.gate import judge
from models.registry import Registry
from models.stage import Stage, StageManifest, registry_key
from models.system import SystemMetrics, system_metrics

LABELS = ["billing", "outage", "fraud"]


def _vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    centres = np.eye(len(LABELS), 16)
    x = centres[y] + rng.normal(0.0, 0.35, (n, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


class _Encoder:
    """Stands in for the sentence encoder: a text is the vector at its index."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.vectors[[int(t) for t in texts]]


@pytest.fixture(scope="module")
def embed_version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Settings]:
    root = tmp_path_factory.mktemp("stage")
    settings = Settings(registry_root=root / "registry", verdict_memory=False)
    x, y = _vectors(900, seed=1)
    result = fit_embed(x[:600], y[:600], x[600:], y[600:], LABELS, ["fraud"], settings)
    registry = Registry(settings.registry_root)
    publish_embed(registry, "tickets", result, promote=True)
    return registry, settings


def test_an_embed_stage_loads_like_any_stage_and_scores_ready_embeddings(
        embed_version: tuple[Registry, Settings]) -> None:
    registry, _ = embed_version
    manifest = registry.serving(registry_key("tickets", "embed"))
    assert manifest is not None and manifest.data["stage"] == "embed"
    stage = Stage.load(manifest.directory, expected_sha256=manifest.sha256)
    assert (stage.stage, stage.version, stage.labels) == ("embed", "embed-v0001", LABELS)
    x, _ = _vectors(50, seed=2)
    probs = stage.predict_features({"embedding": x})
    assert probs.shape == (50, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ModelError, match="without its sentence encoder"):
        stage.predict_many(["0"])
    served = Stage.load(manifest.directory, expected_sha256=manifest.sha256,
                        encoder=lambda: _Encoder(x))  # type: ignore[arg-type, return-value]
    predictions = served.predict_many([str(i) for i in range(50)])
    rounded = x.astype(np.float16).astype(np.float32)  # as the stores keep them
    assert np.allclose(predictions.probs, served.predict_features({"embedding": rounded}),
                       atol=1e-6)
    assert served.routing_policy(0.2).floors.keys() == {"fraud"}


def test_a_tampered_later_stage_is_refused_at_promotion_without_an_encoder(
        embed_version: tuple[Registry, Settings], tmp_path: Path) -> None:
    registry, _ = embed_version
    key = registry_key("tickets", "embed")
    good = registry.serving(key)
    assert good is not None
    version = registry.publish(key, good.model_path.read_bytes(), dict(good.data))
    model = version.model_path
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(ModelError, match="refused"):
        registry.promote(key, version.version)
    assert registry.serving(key).version == good.version  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "message"), [
    ({"stage": "bert"}, "unknown stage"),
    ({"thresholds": [0.5]}, "1 thresholds for 3 labels"),
    ({"stage": "ngram", "featurizer": None}, "needs its featurizer"),
    ({"labels": "billing"}, "labels"),
])
def test_a_manifest_that_does_not_type_check_is_refused(change: dict[str, object],
                                                       message: str) -> None:
    data = {"task": "tickets/embed", "version": "v0001", "stage": "embed", "labels": LABELS,
            "thresholds": [0.5, 0.5, 0.5], "sha256": "0" * 64}
    assert StageManifest.parse(data, "m").stage == "embed"
    with pytest.raises(ModelError, match=message):
        StageManifest.parse({**data, **change}, "m")


def test_an_older_manifest_says_tier_for_stage() -> None:
    older = {"task": "tickets/embed", "version": "v0001", "tier": "embed", "labels": LABELS,
             "thresholds": [0.5, 0.5, 0.5]}
    assert StageManifest.parse(older, "m").stage == "embed"


def _figures(right: int, wrong: int, undecided: int = 0, escaped: int = 0,
             caught: int = 0) -> SystemMetrics:
    """Decided items (right, wrong), undecided ones, and items of the critical label
    ``fraud`` decided wrongly (escaped) or sent to the teacher (caught)."""
    truth = ["a"] * (right + wrong + undecided) + ["fraud"] * (escaped + caught)
    labels = (["a"] * right + ["b"] * wrong + [None] * undecided + ["a"] * escaped
              + [None] * caught)
    decided = [True] * (right + wrong) + [False] * undecided + [True] * escaped + [
        False] * caught
    return system_metrics(truth, decided, labels, critical=["fraud"])


def test_one_gate_for_every_stage() -> None:
    s = Settings()
    meets = _figures(980, 20, 500, caught=100)
    # first stage, nothing serving: meets the targets, or not
    assert judge(meets, True, None, None, None, None, s).passed
    under = judge(_figures(900, 100, 500, caught=100), True, None, None, None, None, s)
    assert not under.passed and "under the target" in under.reason
    # a later stage may not let a critical item escape that the stages before caught
    worse = judge(_figures(980, 20, 500, escaped=20, caught=80), True, meets, None, None,
                  None, s)
    assert not worse.passed and "(over the stages before)" in worse.reason
    # below target, a version no worse than the serving one passes; a worse one does not
    old = _figures(910, 90, 500, caught=100)
    assert judge(_figures(912, 88, 500, caught=100), True, None, old, old, "v0002", s).passed
    drop = judge(_figures(850, 150, 500, caught=100), True, None, old, old, "v0002", s)
    assert not drop.passed and "worse than" in drop.reason
    # deciding nothing withdraws a serving version evidently under the target, else fails
    nothing = _figures(0, 0, 1500, caught=100)
    assert judge(nothing, False, meets, old, _figures(300, 60), "v0002", s).reason.startswith(
        "withdraws serving v0002")
    assert not judge(nothing, False, meets, old, _figures(28, 2), "v0002", s).passed
