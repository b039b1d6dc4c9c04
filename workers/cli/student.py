"""``distillery train``, ``distillery evaluate`` and ``distillery models ...``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import get_task
from workers.cli.common import JsonOpt, TaskOpt, cli_settings, err, out, write_json

models_app = typer.Typer(help="List, inspect, promote, roll back and prune student versions.",
                         no_args_is_help=True)


def _announce(settings: Settings, manifest: Any, action: str) -> None:
    """Tell running workers; a registry without a reachable broker still changes (say so)."""
    from distillery.errors import BrokerError
    from streams.announce import announce_manifest

    try:
        announce_manifest(settings, manifest, action)
        out.print(f"announced {manifest.task} {manifest.version} ({action}) on "
                  f"{settings.topic('models')}")
    except BrokerError as exc:
        err.print(f"warning: not announced, running workers keep their model: {exc}")


def train(
    task: TaskOpt,
    data: Annotated[Path, typer.Option(help="CSV or JSONL of labelled texts")],
    text_col: Annotated[str, typer.Option(help="Text column")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column")] = "label",
    holdout: Annotated[float, typer.Option(min=0.01, max=0.5, help="Holdout fraction")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    announce: Annotated[bool, typer.Option(help="Announce a promoted version on Kafka")] = True,
    json_file: JsonOpt = None,
) -> None:
    """Train, calibrate and evaluate a student; publish it and serve it if it passes the gate."""
    from models.data import read_labelled
    from models.pipeline import publish_and_promote, train_version
    from models.registry import Registry

    s = cli_settings()
    t = get_task(s, task)
    rows = read_labelled(data, text_col, label_col)
    unknown = sorted(set(rows.labels) - set(t.label_names))
    if unknown:
        raise ConfigError(f"{data}: {len(unknown)} labels not in task {task}: "
                          f"{', '.join(unknown[:5])}")
    if t.redactor is not None:  # train on what the worker will serve on (train/serve parity)
        rows = rows.redacted(t.redactor.text)
    serving = Registry.from_settings(s).serving(task)  # its labels keep their places
    with err.status(f"training on {len(rows)} rows") as status:
        result = train_version(
            rows.texts, rows.labels, task=t, settings=s, holdout_fraction=holdout, seed=seed,
            parent_labels=serving.labels if serving else None,
            on_epoch=lambda epoch, loss: status.update(
                f"training on {len(rows)} rows: epoch {epoch}, holdout loss {loss:.4f}"))
        status.update("calibrating, exporting, gating")
        manifest, decision = publish_and_promote(result, task=t, settings=s)
    out.print(report_table(result.report, title=f"{task} {manifest.version} on the holdout"))
    cal = result.calibration
    m = cal.metrics
    decided = "-" if m.decided_accuracy is None else f"{m.decided_accuracy:.3f}"
    catches = ", ".join(f"{c} {v:.3f} (floor {cal.policy.floors[c]:.3f})"
                        for c, v in m.catch_rate.items() if v is not None)
    out.print(f"temperature {cal.temperature:.3f}; on the holdout the student decides "
              f"{m.coverage:.1%} at accuracy {decided} (target {s.accuracy_target})"
              + (f"; catch rates {catches}" if catches else ""))
    verdict = "promoted" if decision.passed else "published, not serving"
    out.print(f"{manifest.version}: {verdict} — {decision.reason}")
    if decision.passed and announce:
        _announce(s, manifest, "promote")
    write_json(json_file, {**result.report, "version": manifest.version,
                            "promoted": decision.passed, "gate_reason": decision.reason,
                            "coverage": m.coverage, "decided_accuracy": m.decided_accuracy,
                            "catch_rate": m.catch_rate, "system": m.as_dict(),
                            "training_data": result.summary})


def evaluate(
    task: TaskOpt,
    data: Annotated[Path, typer.Option(help="CSV or JSONL of labelled texts")],
    text_col: Annotated[str, typer.Option(help="Text column")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column")] = "label",
    version: Annotated[str | None, typer.Option(help="Version (default: serving)")] = None,
    json_file: JsonOpt = None,
) -> None:
    """Slice report of the serving (or given) student on labelled data."""
    from models.data import read_labelled
    from models.pipeline import evaluate_student
    from models.registry import Registry

    s = cli_settings()
    t = get_task(s, task)  # an unknown task is one clear line
    rows = read_labelled(data, text_col, label_col)
    if t.redactor is not None:  # judged on what the worker serves on
        rows = rows.redacted(t.redactor.text)
    student = Registry(s.registry_root).load_student(task, version, threads=s.student_threads)
    fields = rows.slice_fields()
    report = evaluate_student(student, rows.texts, rows.labels,
                              [{k: m[k] for k in fields if k in m} for m in rows.metadata]
                              if fields else None, critical_floor=s.critical_floor)
    out.print(report_table(report, title=f"{task} {student.version}"))
    for field, groups in report.get("metadata_slices", {}).items():
        table = Table(field, "accuracy", "support", title=f"by {field}")
        for value, figures in groups.items():
            table.add_row(value, f"{figures['accuracy']:.3f}", str(figures["support"]))
        out.print(table)
    decided = report["decided_accuracy"]
    out.print(f"the student would decide {report['coverage']:.1%} of these alone, at accuracy "
              + ("-" if decided is None else f"{decided:.3f}")
              + "".join(f"; catch rate {c} {v:.3f}" for c, v in report["catch_rate"].items()
                        if v is not None))
    write_json(json_file, {**report, "version": student.version})


@models_app.command("list")
def models_list(task: Annotated[str | None, typer.Option("--task", "-t")] = None) -> None:
    """Versions per task, which one serves, and their holdout figures."""
    from models.registry import Registry

    registry = Registry(cli_settings().registry_root)
    table = Table("task", "version", "serving", "accuracy", "macro-F1", "gate", "created")
    for name in [task] if task else registry.tasks():
        serving = registry.state(name).get("serving")
        for version in registry.versions(name):
            m = registry.show(name, version)
            rep = m.data.get("report", {})
            table.add_row(name, version, "●" if version == serving else "",
                          f"{rep.get('accuracy', 0):.3f}", f"{rep.get('macro_f1', 0):.3f}",
                          "pass" if m.data.get("gate", {}).get("passed") else "fail",
                          str(m.data.get("created_at", ""))[:19])
    out.print(table)


@models_app.command("show")
def models_show(task: TaskOpt,
                version: Annotated[str | None, typer.Argument()] = None) -> None:
    """A version's manifest (default: the serving one)."""
    from models.registry import Registry

    registry = Registry(cli_settings().registry_root)
    manifest = registry.show(task, version) if version else registry.serving(task)
    if manifest is None:
        raise ConfigError(f"no version of {task} serves yet")
    typer.echo(json.dumps(manifest.data, indent=2))


AnnounceOpt = Annotated[bool, typer.Option(help="Announce the change on the models topic")]


@models_app.command("promote")
def models_promote(task: TaskOpt, version: Annotated[str, typer.Argument()],
                   announce: AnnounceOpt = True) -> None:
    """Serve VERSION for TASK and announce it to running workers."""
    from models.registry import Registry

    s = cli_settings()
    manifest = Registry(s.registry_root).promote(task, version)
    out.print(f"{task}: {version} serves")
    if announce:
        _announce(s, manifest, "promote")


@models_app.command("rollback")
def models_rollback(task: TaskOpt, announce: AnnounceOpt = True) -> None:
    """Serve the previously serving version again and announce it."""
    from models.registry import Registry

    s = cli_settings()
    manifest = Registry(s.registry_root).rollback(task)
    out.print(f"{task}: rolled back to {manifest.version}")
    if announce:
        _announce(s, manifest, "rollback")


@models_app.command("prune")
def models_prune(task: TaskOpt,
                 keep: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """Delete old versions, keeping the serving one and the newest N."""
    from streams.modelstore import prune_versions

    s = cli_settings()
    removed = prune_versions(s, task, keep)
    out.print(f"{task}: removed {len(removed)} versions" + (f" ({', '.join(removed)})"
                                                            if removed else ""))


def report_table(report: Mapping[str, Any], title: str = "slices") -> Table:
    critical = set(report.get("critical_recall", {}))
    table = Table("label", "precision", "recall", "f1", "support",
                  title=f"{title}: accuracy {report['accuracy']:.4f}, "
                        f"macro-F1 {report['macro_f1']:.4f}")
    for name, s in report["slices"].items():
        if not s["support"] and not s["precision"]:
            continue
        mark = " (critical)" if name in critical else ""
        table.add_row(name + mark, f"{s['precision']:.3f}", f"{s['recall']:.3f}",
                      f"{s['f1']:.3f}", str(s["support"]))
    if "coverage" in report:
        table.caption = (f"coverage {report['coverage']:.3f} at accepted accuracy "
                         f"{report['accepted_accuracy']:.3f}")
    return table
