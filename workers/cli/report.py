"""``distillery report``: read the topics back and write an HTML page of plots (and JSON)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from workers.cli.common import cli_settings

log = logging.getLogger(__name__)

_ROWS: list[tuple[str, str, str]] = [
    ("events decided", "events", "n"),
    ("by student", "decided_by_student", "n"),
    ("by teacher", "decided_by_teacher", "n"),
    ("by fallback", "decided_by_fallback", "n"),
    ("student share", "student_share", "%"),
    ("student share, last 1000", "student_share_last_1000", "%"),
    ("teacher calls", "teacher_calls", "n"),
    ("teacher cost", "teacher_cost", "$"),
    ("teacher-only baseline", "teacher_only_cost", "$"),
    ("saving", "saving", "$"),
    ("audit accuracy", "audit_accuracy", "%"),
    ("models promoted", "models_promoted", "n"),
    ("dead letters", "dead_lettered", "n"),
]


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "%":
        return f"{float(value) * 100:.1f}%"
    if kind == "$":
        return f"${float(value):,.4f}"
    return f"{int(value):,}"


def summary_table(figures: dict[str, dict[str, Any]]) -> Table:
    """The headline figures, one column per task."""
    table = Table(title="distillery report", title_justify="left")
    table.add_column("")
    for name in figures:
        table.add_column(name, justify="right")
    for title, key, kind in _ROWS:
        table.add_row(title, *(_cell(f.get(key), kind) for f in figures.values()))
    return table


def report_cmd(
    task: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer reads the annotation
        typer.Option("--task", "-t", help="A task to report on (repeatable; default: all)"),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for report.html")
    ] = Path("distillery-report"),
    json_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Also write the figures as JSON to this file"),
    ] = None,
) -> None:
    """Read the results, teacher, verdict, feedback and model topics; write an HTML report."""
    from workers.report.figures import build_report

    settings = cli_settings()
    console = Console(stderr=True)
    with console.status("reading the topics"):
        page, figures = build_report(settings, task, out, json_file)
    Console().print(summary_table(figures))
    typer.echo(f"report written to {page}")
    if json_file is not None:
        typer.echo(f"figures written to {json_file}")
