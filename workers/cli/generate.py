"""``distillery generate``: write a synthetic stream (``workers.sim.synth``) as JSONL or CSV.

Records come out in the shape ``distillery produce`` reads (record fields; ``metadata`` an
object in JSONL, a JSON string in CSV). With ``--labelled`` the rows are ``id, text, label``
(text as the task's text fields joined by newlines): what ``distillery train --data`` reads.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from distillery.errors import ConfigError
from workers.sim.synth import TASKS, SynthItem, iter_items

log = logging.getLogger(__name__)

PROGRESS_FROM = 5_000  # show a progress bar from this many items on
_SCHEMAS = {"tickets": "ticket", "moderation": "moderation"}


def labelled_row(item: SynthItem, text_fields: list[str]) -> dict[str, str]:
    """``{"id", "text", "label"}`` of an item, its text as the student reads it."""
    return {"id": item.id, "text": item.text_of(text_fields),
            "label": item.metadata["oracle_label"]}


def record_row(item: SynthItem) -> dict[str, Any]:
    """The record as a JSON-ready dict (times ISO 8601, metadata an object)."""
    return dict(item.model_dump(mode="json"))


def _text_fields(task: str) -> list[str]:
    from distillery.settings import load_settings
    from distillery.tasks import get_task

    config = get_task(load_settings(), task)
    if config.schema_name != _SCHEMAS[task]:
        raise ConfigError(
            f"task {task!r} is configured with schema {config.schema_name!r}; the synthetic "
            f"stream writes {_SCHEMAS[task]!r} records"
        )
    return list(config.text_fields)


def _check_args(task: str, n: int, fmt: str, drift_at: float | None, rate: float | None) -> None:
    if task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, not {n}")
    if fmt not in ("jsonl", "csv"):
        raise ConfigError(f"--format must be jsonl or csv, not {fmt!r}")
    if drift_at is not None and not 0.0 <= drift_at < 1.0:
        raise ConfigError(f"--drift-at must be in [0, 1), not {drift_at}")
    if rate is not None and not rate > 0:
        raise ConfigError(f"--rate must be > 0, not {rate}")


def _parse_start(start: str | None) -> datetime | None:
    if start is None:
        return None
    try:
        return datetime.fromisoformat(start)
    except ValueError as exc:
        raise ConfigError(f"--start must be an ISO 8601 time, not {start!r}") from exc


@contextmanager
def _open_out(out: str) -> Iterator[TextIO]:
    if out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise ConfigError(f"output directory does not exist: {path.parent}")
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle


def write_rows(rows: Iterable[dict[str, Any]], stream: TextIO, fmt: str,
               on_row: Callable[[], None] | None = None) -> int:
    """Write dict rows as JSON lines or CSV (nested values as JSON); return how many."""
    writer: csv.DictWriter[str] | None = None
    count = 0
    for row in rows:
        if fmt == "jsonl":
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            flat = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(flat), lineterminator="\n")
                writer.writeheader()
            writer.writerow(flat)
        count += 1
        if on_row is not None:
            on_row()
    return count


def _progress(n: int) -> Progress:
    return Progress(
        TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True, disable=n < PROGRESS_FROM,
    )


def generate_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="tickets or moderation")],
    n: Annotated[int, typer.Option("--n", "-n", help="How many items")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream)")] = 0,
    drift_at: Annotated[
        Optional[float],  # noqa: UP045 - typer reads the annotation
        typer.Option("--drift-at", help="Fraction of the stream from which it drifts, in [0, 1)"),
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output file, or - for stdout")] = "-",
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    labelled: Annotated[
        bool, typer.Option("--labelled", help="Write id,text,label rows (training data)")
    ] = False,
    start: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="created_at of the first item, ISO 8601 (default: now)"),
    ] = None,
    rate: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Space created_at at this many items per second"),
    ] = None,
) -> None:
    """Write N synthetic items of TASK (true label in metadata.oracle_label)."""
    _check_args(task, n, fmt, drift_at, rate)
    fields = _text_fields(task) if labelled else []
    items = iter_items(task, n, seed=seed, drift_at=drift_at, start=_parse_start(start),
                       rate_per_s=rate)
    rows = (labelled_row(i, fields) if labelled else record_row(i) for i in items)
    with _open_out(out) as stream, _progress(n) as progress:
        bar = progress.add_task("items", total=n)
        written = write_rows(rows, stream, fmt, on_row=lambda: progress.advance(bar))
    log.info("wrote %s items of %s to %s", written, task, "stdout" if out == "-" else out)
