"""``distillery produce`` and ``distillery consume``: files to topics and topics to JSON lines."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from distillery.errors import ConfigError
from distillery.settings import Settings
from schemas.records import record_type
from workers.cli.common import cli_settings, err


def _schema_of(s: Settings, topic: str, schema: str | None) -> str:
    from streams.topics import catalogue

    if schema:
        record_type(schema)  # raises a ConfigError naming the known schemas
        return schema
    for spec in catalogue(s):
        if spec.name == topic:
            return spec.schema
    raise ConfigError(f"topic {topic!r} is not in the catalogue; name its schema with --schema")


def produce(
    topic: Annotated[str, typer.Argument(help="Topic, with the prefix")],
    file: Annotated[str, typer.Argument(help="JSONL or CSV file, or - for standard input")],
    schema: Annotated[str | None, typer.Option(help="Record schema for a topic the catalogue does not know")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: from the file name)")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN, repeatable")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Exit 0 even if lines were rejected")] = False,
) -> None:
    """Validate, Avro-encode and produce every line of FILE to TOPIC, keyed by id."""
    from workers.records.files import count_lines, detect_format, open_source, parse_mapping
    from workers.records.transfer import produce_file

    s = cli_settings()
    cls = record_type(_schema_of(s, topic, schema))
    mapping = parse_mapping(map_ or [])
    form = detect_format(file, fmt)
    total = count_lines(file)
    with open_source(file) as stream, Progress(
        TextColumn("producing"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as progress:
        bar = progress.add_task("lines", total=total)
        summary = produce_file(s, topic, stream, form, cls, mapping,
                               on_line=lambda: progress.advance(bar))
    typer.echo(f"produced {summary.produced}, rejected {len(summary.rejected)}")
    for rejection in summary.rejected:
        typer.echo(f"  line {rejection.line}: {rejection.reason}", err=True)
    if summary.rejected and not skip_invalid:
        raise typer.Exit(1)


def consume(
    topic: Annotated[str, typer.Argument(help="Topic, with the prefix")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    max_: Annotated[int | None, typer.Option("--max", min=1, help="Stop after N records")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds with no record")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (commits offsets)")] = None,
) -> None:
    """Print a topic's records as JSON lines; undecodable ones go to stderr as error lines."""
    from workers.records.transfer import consume_topic

    printed, bad = consume_topic(
        cli_settings(), topic, from_beginning=from_beginning, max_records=max_,
        timeout_s=timeout, group=group, out=sys.stdout, err=sys.stderr,
    )
    err.print(f"consumed {printed}, undecodable {bad}")
