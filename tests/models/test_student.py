"""The student: accuracy on CLINC150, ONNX parity, refusal of bad files, label growth,
thresholds that hold on held-out data, the registry and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distillery.errors import ModelError, RegistryError
from distillery.settings import Settings
from distillery.tasks import LabelSpec, TaskConfig
from models.export import check_parity
from models.featurize import Featurizer, FeaturizerConfig
from models.pipeline import gate, publish_and_promote, train_version
from models.registry import Registry
from models.stage import Stage

INTENTS = ["balance", "bill_due", "card_declined", "lost_luggage", "report_fraud",
           "pin_change", "freeze_account", "transfer"]


@pytest.fixture(scope="module")
def clinc(clinc_dir: Path) -> dict[str, list[list[str]]]:
    return json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))


def _task(labels: list[str], critical: list[str] = ()) -> TaskConfig:
    return TaskConfig(name="intents", labels=[LabelSpec(name=n, critical=n in critical)
                                              for n in labels])


def _small(tmp_path: Path) -> Settings:
    return Settings(registry_root=tmp_path / "registry", student_buckets=1 << 16)


def _rows(data: dict, split: str, labels: list[str]) -> tuple[list[str], list[str]]:
    rows = [r for r in data[split] if r[1] in labels]
    return [t for t, _ in rows], [y for _, y in rows]


@pytest.mark.slow
def test_clinc150_accuracy_and_onnx_parity(clinc: dict, tmp_path: Path) -> None:
    settings = Settings(registry_root=tmp_path / "registry")
    texts, labels = [t for t, _ in clinc["train"]], [y for _, y in clinc["train"]]
    task = _task(sorted(set(labels)))
    result = train_version(texts, labels, task=task, settings=settings, seed=0)
    manifest, decision = publish_and_promote(result, task=task, settings=settings)
    assert decision.passed, decision.reason
    assert result.summary["parity_max_abs_diff"] < 1e-4
    student = Stage.load(manifest.directory)
    test_texts, test_labels = [t for t, _ in clinc["test"]], [y for _, y in clinc["test"]]
    predicted = student.predict_many(test_texts).labels
    accuracy = float(np.mean(np.array(predicted) == np.array(test_labels)))
    print(f"CLINC150 in-scope test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.88


def test_parity_check_refuses_a_graph_that_differs(clinc: dict, tmp_path: Path) -> None:
    texts, labels = _rows(clinc, "train", INTENTS)
    result = train_version(texts, labels, task=_task(INTENTS), settings=_small(tmp_path))
    from models.train import train_net  # a different network: the parity check must fail

    featurizer = Featurizer(FeaturizerConfig(**result.featurizer))
    other = train_net(featurizer, texts, labels, texts[:50], labels[:50],
                      __import__("models.train", fromlist=["TrainConfig"]).TrainConfig(seed=9))
    with pytest.raises(ModelError, match="export refused"):
        check_parity(result.model, other.net, result.calibration.temperature, featurizer,
                     texts[:64])


def test_corrupt_truncated_or_mismatched_files_are_refused(clinc: dict, tmp_path: Path) -> None:
    settings = _small(tmp_path)
    task = _task(INTENTS)
    texts, labels = _rows(clinc, "train", INTENTS)
    first, _ = publish_and_promote(train_version(texts, labels, task=task, settings=settings),
                                   task=task, settings=settings)
    second, _ = publish_and_promote(
        train_version(texts, labels, task=task, settings=settings, seed=1),
        task=task, settings=settings, force=True)
    registry = Registry(settings.registry_root)
    model = second.directory / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ModelError, match="sha256"):
        Stage.load(second.directory)
    model.write_bytes(good[:-10] + b"0123456789")  # corrupt, same length
    with pytest.raises(ModelError, match="refused"):
        registry.load_student("intents", second.version)
    with pytest.raises(ModelError, match="expected"):
        Stage.load(first.directory, expected_sha256="f" * 64)  # not the announced model
    assert registry.serving("intents").version == second.version
    with pytest.raises(ModelError):
        registry.promote("intents", second.version)  # promote refuses the corrupt file
    registry.rollback("intents")
    assert registry.serving("intents").version == first.version  # the good one serves


def test_label_set_grows_between_versions(clinc: dict, tmp_path: Path) -> None:
    settings = _small(tmp_path)
    texts, labels = _rows(clinc, "train", INTENTS[:5])
    task5 = _task(INTENTS[:5])
    v1, _ = publish_and_promote(train_version(texts, labels, task=task5, settings=settings),
                                task=task5, settings=settings)
    texts8, labels8 = _rows(clinc, "train", INTENTS)
    task8 = _task(INTENTS)
    result = train_version(texts8, labels8, task=task8, settings=settings,
                           parent_labels=v1.labels)
    assert result.labels[:5] == v1.labels and set(result.labels) == set(INTENTS)
    v2, decision = publish_and_promote(result, task=task8, settings=settings)
    assert decision.passed, decision.reason
    student = Registry(settings.registry_root).load_student("intents")
    assert student.version == v2.version and len(student.labels) == 8
    test_texts, test_labels = _rows(clinc, "test", INTENTS[5:])
    predicted = student.predict_many(test_texts).labels
    assert np.mean(np.array(predicted) == np.array(test_labels)) > 0.8  # the new labels work


def test_thresholds_meet_their_accuracy_target_on_held_out_data(clinc: dict,
                                                                tmp_path: Path) -> None:
    from models.policy import decide

    labels_used = sorted({y for _, y in clinc["train"]})[:40]
    settings = _small(tmp_path).model_copy(update={"accuracy_target": 0.95,
                                                   "min_class_support": 30})
    texts, labels = _rows(clinc, "train", labels_used)
    cal_texts, cal_labels = _rows(clinc, "val", labels_used)
    result = train_version(texts, labels, task=_task(labels_used), settings=settings,
                           holdout_texts=cal_texts, holdout_labels=cal_labels)
    manifest, _ = publish_and_promote(result, task=_task(labels_used), settings=settings,
                                      force=True)
    student = Stage.load(manifest.directory)
    test_texts, test_labels = _rows(clinc, "test", labels_used)
    d = decide(student.predict_proba(test_texts), student.routing_policy(0.2))
    right = np.array([student.labels[i] for i in d.label_ids]) == np.array(test_labels)
    accuracy = float(right[d.decided].mean())
    print(f"held-out decided accuracy {accuracy:.3f} at coverage {d.decided.mean():.3f}")
    assert d.decided.mean() > 0.5
    assert accuracy >= settings.accuracy_target


def test_gate_blocks_a_critical_regression_and_first_versions_need_the_floors(
    clinc: dict, tmp_path: Path
) -> None:
    settings = _small(tmp_path)
    task = _task(INTENTS, critical=["report_fraud"])
    texts, labels = _rows(clinc, "train", INTENTS)
    good = train_version(texts, labels, task=task, settings=settings)
    assert gate(good, None, settings, task).passed
    publish_and_promote(good, task=task, settings=settings)
    # a version that has never seen report_fraud cannot recall it
    keep = [i for i, y in enumerate(labels) if y != "report_fraud"]
    bad = train_version([texts[i] for i in keep], [labels[i] for i in keep], task=task,
                        settings=settings, holdout_texts=good.holdout_texts,
                        holdout_labels=good.holdout_labels)
    serving = Registry(settings.registry_root).load_student("intents")
    decision = gate(bad, serving, settings, task)
    assert not decision.passed and "report_fraud" in decision.reason
    first = gate(bad, None, settings, task)  # as a first version: no report_fraud example
    assert not first.passed and "report_fraud has 0" in first.reason
    # the examples rule off: the system is judged, and its report_fraud catch rate is known
    lax = settings.model_copy(update={"min_critical_examples": 0})
    gate(bad, None, lax, task)
    assert bad.system.catch_rate["report_fraud"] is not None


def test_registry_list_promote_rollback_prune(clinc: dict, tmp_path: Path) -> None:
    settings = _small(tmp_path)
    task = _task(INTENTS)
    texts, labels = _rows(clinc, "train", INTENTS)
    result = train_version(texts, labels, task=task, settings=settings)
    registry = Registry(settings.registry_root)
    made = [registry.publish("intents", result.model, result.manifest([])).version
            for _ in range(4)]
    assert registry.versions("intents") == made == ["v0001", "v0002", "v0003", "v0004"]
    registry.promote("intents", "v0002")
    registry.promote("intents", "v0003")
    assert registry.rollback("intents").version == "v0002"
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback("intents")
    assert registry.prune("intents", keep=1) == ["v0001", "v0003"]
    assert registry.versions("intents") == ["v0002", "v0004"]
    with pytest.raises(RegistryError, match="no version v0009"):
        registry.show("intents", "v0009")


def test_featurizer_is_stable_across_processes() -> None:
    texts = ["Où est ma commande ?", "reset my PASSWORD please", "", "a"]
    here = Featurizer().transform(texts)[0].tolist()
    code = ("import json,sys; from models.featurize import Featurizer; "
            f"print(json.dumps(Featurizer().transform({texts!r})[0].tolist()))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin"},
                           cwd=Path(__file__).resolve().parents[2])
    assert json.loads(other.stdout) == here


def test_cli_train_evaluate_and_models(clinc: dict, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.cli.main import main

    tasks = tmp_path / "tasks.toml"
    labels = ", ".join(f'{{ name = "{n}" }}' for n in INTENTS)
    tasks.write_text(f'[tasks.intents]\nlabels = [{labels}]\n', encoding="utf-8")
    data = tmp_path / "train.jsonl"
    texts, ys = _rows(clinc, "train", INTENTS)
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in zip(texts, ys, strict=True)), encoding="utf-8")
    for key, value in {"REGISTRY_ROOT": str(tmp_path / "reg"), "TASKS_FILE": str(tasks),
                       "STUDENT_BUCKETS": "65536",
                       "KAFKA_BOOTSTRAP": "127.0.0.1:1"}.items():
        monkeypatch.setenv(f"DISTILLERY_{key}", value)
    report = tmp_path / "train.json"
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "intents", "--data", str(data), "--no-announce",
              "--json", str(report)])
    assert done.value.code in (0, None)
    figures = json.loads(report.read_text())
    assert {"accuracy", "macro_f1", "slices", "critical_recall"} <= set(figures)
    assert figures["promoted"] and figures["version"] == "v0001"
    out = tmp_path / "eval.json"
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--task", "intents", "--data", str(data), "--json", str(out)])
    assert done.value.code in (0, None)
    assert set(json.loads(out.read_text())["slices"]["balance"]) >= {
        "precision", "recall", "f1", "support"}
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "intents", "--data", str(data), "--label-col", "nope"])
    assert done.value.code == 2
