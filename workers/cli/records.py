"""``distillery produce`` and ``distillery consume``: files to topics and topics to JSON lines.

A topic argument is a short catalogue name (``tickets``, ``tickets.routed``), to which
``DISTILLERY_TOPIC_PREFIX`` is applied, or a full name; the command says which full name it
used (``resolve_topic``, shared by the other commands that take a topic).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import load_tasks
from schemas.records import record_type
from schemas.serde import WireFormat
from workers.cli.common import cli_settings, err


def resolve_topic(s: Settings, name: str, *, say: bool = True) -> str:
    """The full topic name for ``name``: the prefixed catalogue topic when ``name`` is a short
    catalogue name, else ``name`` as given (a full name, or a topic outside the catalogue).
    Says on stderr which name it used when ``say``."""
    from streams.topics import catalogue

    known = {spec.name for spec in catalogue(s)}
    full = s.topic(name) if s.topic(name) in known else name
    if say:
        announce_topic(s, full)
    return full


def announce_topic(s: Settings, full: str) -> None:
    """Say on stderr which full topic name a command uses."""
    from streams.topics import spec_for

    where = "" if spec_for(s, full) is not None else " (not in the catalogue)"
    typer.echo(f"topic {full}{where}", err=True)


def _schema_of(s: Settings, topic: str, schema: str | None) -> str:
    from streams.topics import catalogue

    if schema:
        record_type(schema)  # raises a ConfigError naming the known schemas
        return schema
    for spec in catalogue(s):
        if spec.name == topic:
            return spec.schema
    raise ConfigError(f"topic {topic!r} is not in the catalogue (DISTILLERY_TOPIC_PREFIX is "
                      f"{s.topic_prefix!r}); name its schema with --schema")


def _wire_of(s: Settings, topic: str, wire: str | None) -> WireFormat:
    """JSON or Avro: as asked, else JSON for the input topic of a task that takes only JSON."""
    if wire is not None:
        if wire not in ("avro", "json"):
            raise ConfigError(f"--wire must be avro or json, not {wire!r}")
        return "json" if wire == "json" else "avro"
    for task in load_tasks(s).values():
        if s.topic(task.input_topic) == topic and task.input_format == "json":
            return "json"
    return "avro"


def produce(
    topic: Annotated[str, typer.Argument(help="Topic: a catalogue name (the prefix is applied) or a full name")],
    file: Annotated[str, typer.Argument(help="JSONL or CSV file, or - for standard input")],
    schema: Annotated[str | None, typer.Option(help="Record schema for a topic the catalogue does not know")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: from the file name)")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN, repeatable")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Exit 0 even if lines were rejected")] = False,
    wire: Annotated[str | None, typer.Option(help="avro or json (default: json for a task that takes only JSON, else avro)")] = None,
) -> None:
    """Validate, encode (Avro or JSON) and produce every line of FILE to TOPIC, keyed by id."""
    from workers.records.files import count_lines, detect_format, open_source, parse_mapping
    from workers.records.transfer import produce_file

    s = cli_settings()
    topic = resolve_topic(s, topic, say=False)
    cls = record_type(_schema_of(s, topic, schema))
    wire_format = _wire_of(s, topic, wire)
    mapping = parse_mapping(map_ or [])
    form = detect_format(file, fmt)
    total = count_lines(file)
    source = open_source(file)  # a missing file is one error line, before anything is said
    announce_topic(s, topic)
    with source as stream, Progress(
        TextColumn("producing"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as progress:
        bar = progress.add_task("lines", total=total)
        summary = produce_file(s, topic, stream, form, cls, mapping,
                               on_line=lambda: progress.advance(bar), wire=wire_format)
    typer.echo(f"produced {summary.produced}, rejected {len(summary.rejected)}")
    for rejection in summary.rejected:
        typer.echo(f"  line {rejection.line}: {rejection.reason}", err=True)
    if summary.rejected and not skip_invalid:
        raise typer.Exit(1)


def consume(
    topic: Annotated[str, typer.Argument(help="Topic: a catalogue name (the prefix is applied) or a full name")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    max_: Annotated[int | None, typer.Option("--max", min=1, help="Stop after N records")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds with no record")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (commits offsets)")] = None,
) -> None:
    """Print a topic's records (Avro or JSON) as JSON lines; undecodable ones go to stderr."""
    from workers.records.transfer import consume_topic

    s = cli_settings()
    topic = resolve_topic(s, topic, say=False)
    printed, bad = consume_topic(
        s, topic, from_beginning=from_beginning, max_records=max_,
        timeout_s=timeout, group=group, out=sys.stdout, err=sys.stderr,
    )
    typer.echo(f"consumed {printed} from topic {topic}, undecodable {bad}", err=True)
