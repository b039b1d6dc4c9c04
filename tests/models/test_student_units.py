"""Unit tests of the student's parts: featurizer, export, runtime, calibration, slices,
registry, data files and the CLI's model commands (small models, a few seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from distillery.errors import ConfigError, ModelError, RegistryError
from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from models import Registry, Stage, slice_report, train_version
from models.calibrate import choose_thresholds, fit_temperature, softmax
from models.data import read_labelled
from models.featurize import Featurizer, FeaturizerConfig, _mix
from models.pipeline import TrainResult, publish_and_promote
from models.train import class_weights

INTENTS = ["balance", "bill_due", "card_declined", "lost_luggage", "report_fraud",
           "pin_change", "freeze_account", "transfer"]


@pytest.fixture(scope="module")
def rows(clinc_dir: Path) -> list[tuple[str, str]]:
    data = json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))
    return [(t, y) for t, y in data["train"] if y in INTENTS]


def _task(critical: tuple[str, ...] = ()) -> TaskConfig:
    return TaskConfig(name="intents",
                      labels=[LabelSpec(name=n, critical=n in critical) for n in INTENTS])


def _settings(tmp_path: Path) -> Settings:
    return Settings(registry_root=tmp_path / "registry", student_buckets=1 << 16)


@pytest.fixture(scope="module")
def trained(rows: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
            ) -> TrainResult:
    settings = _settings(tmp_path_factory.mktemp("trained"))
    return train_version([t for t, _ in rows], [y for _, y in rows], task=_task(),
                         settings=settings, seed=3)


# --- featurizer -------------------------------------------------------------------------
def _reference_ids(text: str, config: FeaturizerConfig) -> list[int]:
    """The same features, one window at a time in plain Python (slow, obviously right)."""
    mod, base = 1 << 64, 0x100000001B3
    folded = "".join(c if c.isascii() and c.isalnum() else (" " if c.isascii() else c)
                     for c in text.lower())
    data = (" " + " ".join(folded.split()) + " ").encode("utf-8")
    data = data if data.strip() else b" "

    def poly(chunk: bytes) -> int:
        return sum(b * pow(base, len(chunk) - 1 - i, mod) for i, b in enumerate(chunk)) % mod

    def mixed(h: int) -> int:
        return int(_mix(np.array([h], dtype=np.uint64))[0])

    words = [poly(w.encode("utf-8")) for w in data.decode("utf-8").split()]
    hashes = [mixed(h ^ 0x9E3779B97F4A7C15) for h in words]
    for a, b in zip(words, words[1:], strict=False):
        pair = (mixed(a ^ 0xC2B2AE3D27D4EB4F) * base + b) % mod
        hashes.append(mixed(pair ^ 0xC2B2AE3D27D4EB4F))
    for n in range(config.char_min, config.char_max + 1):
        for i in range(len(data) - n + 1):
            hashes.append(mixed(poly(data[i:i + n]) ^ ((0x165667B19E3779F9 + n) % mod)))
    return sorted(h % config.buckets + 1 for h in hashes)


def test_vectorised_hashing_matches_a_plain_python_reference() -> None:
    config = FeaturizerConfig(buckets=1 << 16, max_ids=400)
    texts = ["Where is my card?!", "héllo  wörld", "a", "", "  spaces   everywhere  "]
    ids, mask = Featurizer(config).transform(texts)
    assert ids.shape == mask.shape == (len(texts), 400) and ids.dtype == np.int64
    assert mask.dtype == np.float32 and np.array_equal(mask, (ids > 0).astype(np.float32))
    for row, text in zip(ids, texts, strict=True):
        assert sorted(int(i) for i in row if i) == _reference_ids(text, config), text


def test_items_do_not_leak_into_each_other_and_caps_keep_words() -> None:
    featurizer = Featurizer(FeaturizerConfig(buckets=1 << 16, max_ids=24))
    alone = featurizer.transform(["reset my password"])[0][0]
    together = featurizer.transform(["zzz", "reset my\x00password", "reset my password"])[0]
    assert sorted(together[2]) == sorted(alone)  # batch-mates and NULs change nothing
    words = [f"word{i}" for i in range(15)]
    row = featurizer.transform([" ".join(words)])[0][0]
    assert (row > 0).sum() == 24  # capped
    unigram_ids = set(featurizer.transform(words)[0][:, 0].tolist())  # rank 0: the unigram
    assert unigram_ids <= set(row.tolist())  # unigrams survive the cap first
    assert featurizer.transform([])[0].shape == (0, 24)


# --- training, export, runtime ----------------------------------------------------------
def test_same_seed_same_model_and_rare_classes_weigh_more(
    rows: list[tuple[str, str]], trained: TrainResult, tmp_path: Path
) -> None:
    again = train_version([t for t, _ in rows], [y for _, y in rows], task=_task(),
                          settings=_settings(tmp_path), seed=3)
    assert again.model == trained.model  # seeded and reproducible, byte for byte
    weights = class_weights(np.array([0] * 95 + [1] * 5), 2, min_share=0.2)
    assert weights[0] == 1.0 and weights[1] == pytest.approx(4.0)


def test_export_is_one_file_with_dynamic_batch_and_calibrated_probs(
    trained: TrainResult, tmp_path: Path
) -> None:
    model = onnx.load_from_string(trained.model)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert "Loop" not in {node.op_type for node in model.graph.node}
    manifest, _ = publish_and_promote(trained, task=_task(), settings=_settings(tmp_path))
    assert sorted(p.name for p in manifest.directory.iterdir()) == ["manifest.json",
                                                                    "model.onnx"]
    student = Stage.load(manifest.directory / "model.onnx")  # a file path works too
    texts = trained.holdout_texts
    batch = student.predict_many(texts)
    one = student.predict_many(texts[:1])
    assert np.allclose(one.probs[0], batch.probs[0], atol=1e-6)
    assert np.allclose(batch.probs.sum(axis=1), 1.0, atol=1e-5)
    top = np.sort(batch.probs, axis=1)
    assert np.allclose(batch.confidence, top[:, -1]) and np.allclose(
        batch.margin, top[:, -1] - top[:, -2])
    assert batch.labels == [student.labels[i] for i in batch.label_ids]
    assert student.accepts(batch).dtype == bool
    assert student.predict_many([]).probs.shape == (0, len(INTENTS))
    assert student.task == "intents" and set(student.thresholds) == set(INTENTS)


def test_a_manifest_that_does_not_fit_its_model_is_refused(
    trained: TrainResult, tmp_path: Path
) -> None:
    manifest, _ = publish_and_promote(trained, task=_task(), settings=_settings(tmp_path))
    path = manifest.directory / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "thresholds": data["thresholds"][:-1]}))
    with pytest.raises(ModelError, match="thresholds"):
        Stage.load(manifest.directory)
    path.write_text(json.dumps({**data, "featurizer": {**data["featurizer"], "scheme": 99}}))
    with pytest.raises(ModelError, match="scheme"):
        Stage.load(manifest.directory)
    (manifest.directory / "model.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        Stage.load(manifest.directory)


# --- calibration and slices -------------------------------------------------------------
def test_temperature_and_thresholds_on_synthetic_scores() -> None:
    rng = np.random.default_rng(0)
    n, k, true_t = 4000, 5, 2.0
    logits = rng.normal(size=(n, k)) * 8
    y = np.array([rng.choice(k, p=p) for p in softmax(logits, true_t)])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.15)
    temperature = fit_temperature(logits[:2000], y[:2000])
    thresholds = choose_thresholds(softmax(logits[:2000], temperature), y[:2000],
                                   np.ones(2000), 0.9, 1.0, 50)
    probs = softmax(logits[2000:], temperature)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    accepted = conf >= thresholds[pred]
    assert 0.05 < accepted.mean() < 0.9
    assert (pred[accepted] == y[2000:][accepted]).mean() >= 0.88  # holds on fresh data
    separable = np.eye(3)[np.arange(30) % 3] * 50
    assert fit_temperature(separable, np.arange(30) % 3) >= 0.5  # no collapse to T → 0


def test_slice_report_keys_and_figures() -> None:
    truth = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    meta = [{"tier": "gold"}, {"tier": "free"}, {"tier": "gold"}, {}, {"tier": "free"}]
    report = slice_report(truth, pred, ["a", "b", "c"], ["c"], metadata=meta,
                          metadata_fields=["tier"], accepted=[True, False, True, True, False])
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["slices"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                     "f1": pytest.approx(0.8), "support": 2}
    assert report["critical_recall"] == {"c": 0.0}
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert report["confusion"] == {"labels": ["a", "b", "c"],
                                   "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 0]]}
    assert report["coverage"] == pytest.approx(0.6) and report["accepted_accuracy"] == 1.0
    assert report["metadata_slices"]["tier"]["gold"] == {"accuracy": 1.0, "support": 2}
    json.dumps(report)  # plain JSON types only


# --- registry ---------------------------------------------------------------------------
def test_registry_prune_keeps_rollback_target_and_state_is_atomic(
    trained: TrainResult, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "reg", keep=1)
    with pytest.raises(RegistryError, match="serves yet"):
        registry.load_student("intents")
    data = trained.manifest()
    for _ in range(5):
        registry.publish("intents", trained.model, data)
    assert registry.promote("intents", "v0002").version == "v0002"
    assert registry.promote("intents", "v0004").parent is None  # published before promotes
    assert registry.prune("intents") == ["v0001", "v0003"]  # v0002 is the rollback target
    assert registry.versions("intents") == ["v0002", "v0004", "v0005"]
    assert [m.version for m in registry.manifests("intents")] == registry.versions("intents")
    (registry.root / "intents" / "v0002" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        registry.rollback("intents")  # refused: the current version keeps serving
    assert registry.serving("intents").version == "v0004"  # type: ignore[union-attr]
    leftovers = [p.name for p in (registry.root / "intents").iterdir() if p.name[0] == "."]
    assert leftovers == []
    state = json.loads((registry.root / "intents" / "state.json").read_text())
    assert state["serving"] == "v0004" and state["history"] == ["v0002", "v0004"]


# --- data files and CLI -----------------------------------------------------------------
def test_data_files_csv_jsonl_and_clear_errors(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text,label,tier\nhello there,greet,gold\nbye,leave,free\n")
    data = read_labelled(csv_file)
    assert data.texts == ["hello there", "bye"] and data.labels == ["greet", "leave"]
    assert data.metadata == [{"tier": "gold"}, {"tier": "free"}]
    assert data.slice_fields() == ["tier"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"body": "x", "queue": "q"}\n\n{"body": "y", "queue": "r"}\n')
    assert read_labelled(jsonl, "body", "queue").labels == ["q", "r"]
    with pytest.raises(ConfigError, match="no column 'text'"):
        read_labelled(jsonl)
    jsonl.write_text('{"text": "x", "label": "q"}\n{oops\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_labelled(jsonl)
    with pytest.raises(ConfigError, match="not found"):
        read_labelled(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="unknown format"):
        read_labelled(csv_file.rename(tmp_path / "d.txt"))


def test_cli_models_commands(trained: TrainResult, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from workers.cli.main import main

    root = tmp_path / "reg"
    registry = Registry(root)
    for _ in range(3):
        registry.publish("intents", trained.model, trained.manifest())
    registry.promote("intents", "v0001")
    monkeypatch.setenv("DISTILLERY_REGISTRY_ROOT", str(root))
    monkeypatch.setenv("DISTILLERY_KAFKA_BOOTSTRAP", "127.0.0.1:1")

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as done:
            main(list(argv))
        return int(done.value.code or 0)

    assert run("models", "list", "--task", "intents") == 0
    assert "v0003" in capsys.readouterr().out
    assert run("models", "show", "--task", "intents", "v0002") == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v0002"
    run("models", "promote", "--task", "intents", "v0003", "--no-announce")
    assert registry.serving("intents").version == "v0003"  # type: ignore[union-attr]
    run("models", "rollback", "--task", "intents", "--no-announce")
    assert registry.serving("intents").version == "v0001"  # type: ignore[union-attr]
    assert run("models", "prune", "--task", "intents", "--keep", "1") == 0
    assert registry.versions("intents") == ["v0001", "v0003"]
    assert run("models", "promote", "--task", "intents", "v0042", "--no-announce") == 2
    assert "no version v0042" in capsys.readouterr().err
