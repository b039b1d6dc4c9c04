"""Reading user files of records (JSONL or CSV) into validated records, line by line.

Used by ``distillery produce`` and by anything else that loads events from a file. Each
line becomes a record or a ``Rejection`` carrying its line number and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from distillery.errors import ConfigError, DistilleryError
from models.data import jsonl_rows
from schemas.records import InputRecord, Record
from schemas.serde import encode, validate


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


# A cell may be far larger than the csv module's 128 KiB default: it is read whole and then
# rejected by the record's own size rule (DISTILLERY_MAX_TEXT_CHARS), line by line.
CSV_FIELD_LIMIT = 1 << 30


def open_source(path: str) -> TextIO:
    """The file (or standard input) as text; bytes that are not UTF-8 do not stop the read:
    they are kept as surrogates and the line they are on is rejected (``iter_rows``)."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape",
                                newline="")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"input file not found: {path}")
    return file.open("r", encoding="utf-8", errors="surrogateescape", newline="")


def _bad_utf8(row: dict[str, Any]) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def detect_format(path: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in ("jsonl", "csv"):
            raise ConfigError(f"--format must be jsonl or csv, not {explicit!r}")
        return explicit
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def iter_rows(stream: TextIO, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs; a row that cannot be parsed is given as an error string."""
    rows = _csv_rows(stream) if fmt == "csv" else jsonl_rows(stream)
    for number, row in rows:
        if isinstance(row, dict) and _bad_utf8(row):
            yield number, "not valid UTF-8"
        else:
            yield number, row


def _csv_rows(stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(stream)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # one bad line is a rejection; the reader goes on after it
            yield reader.line_num, f"unreadable CSV: {exc}"
            continue
        yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``FIELD=COLUMN`` options to a {field: column} dict."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise ConfigError(f"--map takes FIELD=COLUMN, got {pair!r}")
        mapping[field] = column
    return mapping


def to_record(
    row: dict[str, Any], cls: type[Record], mapping: dict[str, str], max_text_chars: int
) -> Record:
    """A raw row to a validated record: columns mapped, ids generated, extras to metadata."""
    data = {field: row[column] for field, column in mapping.items() if column in row}
    used = set(mapping.values())
    fields = cls.model_fields
    for key, value in row.items():
        if key in used or key in data:
            continue
        if key in fields:
            data[key] = value
        elif issubclass(cls, InputRecord):
            data.setdefault("metadata", {})
            if isinstance(data["metadata"], dict):
                data["metadata"][key] = "" if value is None else str(value)
        else:
            data[key] = value  # an unknown field: validation names it
    if "id" in fields and data.get("id") is None:  # absent: generate; empty: a rejection
        data["id"] = uuid.uuid4().hex
    for key, value in list(data.items()):
        if value == "" and key in fields and not fields[key].is_required():
            del data[key]  # an empty CSV cell means "not given"
    if isinstance(data.get("metadata"), str):
        try:
            data["metadata"] = json.loads(data["metadata"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"metadata is not a JSON object: {exc.msg}") from exc
    return validate(cls, data, max_text_chars=max_text_chars)


def read_records(
    stream: TextIO, fmt: str, cls: type[Record], mapping: dict[str, str], max_text_chars: int
) -> Iterator[tuple[int, Record | Rejection]]:
    for number, row in iter_rows(stream, fmt):
        if isinstance(row, str):
            yield number, Rejection(number, row)
            continue
        try:
            yield number, to_record(row, cls, mapping, max_text_chars)
        except DistilleryError as exc:
            yield number, Rejection(number, str(exc))


def to_json(record: Record) -> str:
    """A record as one JSON line (bytes in base64, times in ISO 8601): the JSON wire format."""
    return encode(record, "json").decode("utf-8")


def count_lines(path: str) -> int | None:
    if path == "-" or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)
