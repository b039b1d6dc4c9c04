"""Labelled data files for ``train`` and ``evaluate``: CSV or JSONL, text and label columns.

Other columns become string metadata (for slices by metadata field). Every problem with a
file is one ``ConfigError`` line naming the file and, where it helps, the line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.errors import ConfigError

MAX_METADATA_VALUES = 50  # a column with more distinct values is not a useful slice


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[str]
    metadata: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def redacted(self, redact: Callable[[str], str]) -> Labelled:
        """The same rows with ``redact`` applied to each text (a task's redaction)."""
        return Labelled([redact(t) for t in self.texts], self.labels, self.metadata)

    def slice_fields(self) -> list[str]:
        """Metadata columns with few enough distinct values to slice by."""
        values: dict[str, set[str]] = {}
        for row in self.metadata:
            for key, value in row.items():
                values.setdefault(key, set()).add(value)
        return sorted(k for k, v in values.items() if 1 < len(v) <= MAX_METADATA_VALUES)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``.csv`` or ``.jsonl`` (``.json`` lines) file, as dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_rows(path)
    raise ConfigError(f"data file {path}: unknown format {suffix!r} (use .csv or .jsonl)")


def read_pairs(path: Path, text_col: str = "text", label_col: str = "label"
               ) -> list[tuple[str, str]]:
    """(text, label) pairs of a labelled file (bootstrap rows for the trainer and backtest)."""
    data = read_labelled(path, text_col, label_col)
    return list(zip(data.texts, data.labels, strict=True))


def read_labelled(path: Path, text_col: str = "text", label_col: str = "label") -> Labelled:
    """Read a ``.csv`` or ``.jsonl`` (``.json`` lines) file of labelled texts."""
    rows = read_rows(path)
    if not rows:
        raise ConfigError(f"data file {path} holds no rows")
    return _columns(Path(path), rows, text_col, label_col)


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"data file {path} is not readable CSV: {exc}") from exc


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, object) for each non-blank JSON line; a bad line gives its reason instead.

    The one JSONL reader: strict callers raise on the reason, ``produce`` reports it and goes on.

    >>> list(jsonl_rows(['{"a": 1}', "", "[1]"]))
    [(1, {'a': 1}), (3, 'not a JSON object')]
    >>> next(jsonl_rows(["{oops"]))[1][:14]
    'not valid JSON'
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        yield number, value if isinstance(value, dict) else "not a JSON object"


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"data file {path} is not UTF-8: {exc.reason}") from exc
    rows = []
    for number, row in jsonl_rows(lines):
        if isinstance(row, str):
            raise ConfigError(f"data file {path}, line {number}: {row}")
        rows.append(row)
    return rows


def _columns(path: Path, rows: list[dict[str, Any]], text_col: str,
             label_col: str) -> Labelled:
    texts, labels, metadata = [], [], []
    for number, row in enumerate(rows, start=1):
        for column in (text_col, label_col):
            if column not in row:
                raise ConfigError(f"data file {path}: row {number} has no column {column!r} "
                                  f"(columns: {', '.join(map(str, row)) or 'none'})")
        text, label = row[text_col], row[label_col]
        if not isinstance(text, str) or label is None or str(label).strip() == "":
            raise ConfigError(f"data file {path}, row {number}: empty or non-text "
                              f"{text_col!r}/{label_col!r}")
        texts.append(text)
        labels.append(str(label).strip())
        metadata.append({str(k): str(v) for k, v in row.items()
                         if k not in (text_col, label_col) and v is not None
                         and not isinstance(v, dict | list)})
    return Labelled(texts, labels, metadata)
