"""Commands for the Kafka side: ``broker``, ``topics``, ``produce`` and ``consume``."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from distillery.errors import ConfigError
from distillery.settings import Settings, load_settings
from schemas.records import record_type

broker_app = typer.Typer(help="Run the embedded single-node Kafka broker.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and inspect the topic catalogue.", no_args_is_help=True)
err = Console(stderr=True)


def settings() -> Settings:
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return load_settings()


@broker_app.command("start")
def broker_start() -> None:
    """Start the embedded broker (fetching Kafka's jars on first use); waits until it answers."""
    from workers.broker import EmbeddedBroker

    broker = EmbeddedBroker(settings())
    with err.status(f"starting Kafka {broker.settings.kafka_version} on {broker.bootstrap}"):
        started = broker.start()
    verb = "started" if started else "is already running"
    typer.echo(f"embedded Kafka {broker.settings.kafka_version} {verb} on {broker.bootstrap}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker; its data stays for the next start."""
    from workers.broker import EmbeddedBroker

    stopped = EmbeddedBroker(settings()).stop()
    typer.echo("embedded Kafka stopped" if stopped else "embedded Kafka was not running")


@broker_app.command("status")
def broker_status(
    json_file: Annotated[Path | None, typer.Option("--json", help="Write as JSON")] = None,
) -> None:
    """Say whether the embedded broker runs, where, and where its data and log are."""
    from workers.broker import EmbeddedBroker

    status = EmbeddedBroker(settings()).status()
    if json_file:
        json_file.write_text(json.dumps(asdict(status), indent=2), encoding="utf-8")
    state = "running" if status.running else "stopped"
    typer.echo(f"embedded Kafka {status.kafka_version}: {state}"
               + (f" (pid {status.pid}) on {status.bootstrap}" if status.running else ""))
    typer.echo(f"data: {status.data_dir}\nlog:  {status.log_file}")
    if not status.running:
        raise typer.Exit(1)


@broker_app.command("logs")
def broker_logs(lines: Annotated[int, typer.Option("-n", "--lines", min=1)] = 50) -> None:
    """Print the last lines of the embedded broker's log."""
    from workers.broker import EmbeddedBroker

    for line in EmbeddedBroker(settings()).logs(lines):
        typer.echo(line)


@topics_app.command("create")
def topics_create() -> None:
    """Create every catalogue topic that does not exist yet (idempotent)."""
    from streams.topics import catalogue, create_topics

    s = settings()
    created = create_topics(s)
    total = len(catalogue(s))
    typer.echo(f"{len(created)} topics created, {total - len(created)} already existed")


@topics_app.command("list")
def topics_list() -> None:
    """List the topics under the configured prefix, and which catalogue topics are missing."""
    from streams.topics import catalogue, list_topics

    s = settings()
    existing = set(list_topics(s))
    table = Table("topic", "schema", "partitions", "exists")
    for spec in catalogue(s):
        table.add_row(spec.name, spec.schema, str(spec.partitions),
                      "yes" if spec.name in existing else "no")
    Console().print(table)


@topics_app.command("describe")
def topics_describe(names: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Partitions and config of topics (default: the whole catalogue)."""
    from streams.topics import catalogue, describe_topics, list_topics

    s = settings()
    existing = set(list_topics(s))
    wanted = names or [spec.name for spec in catalogue(s) if spec.name in existing]
    missing = [n for n in wanted if n not in existing]
    if missing:
        raise ConfigError(f"no such topic: {', '.join(missing)}")
    for row in describe_topics(s, wanted):
        typer.echo(json.dumps(row))


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
    from workers.kafka_cli_ops import produce_file
    from workers.records_io import count_lines, detect_format, open_source, parse_mapping

    s = settings()
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
    from workers.kafka_cli_ops import consume_topic

    printed, bad = consume_topic(
        settings(), topic, from_beginning=from_beginning, max_records=max_,
        timeout_s=timeout, group=group, out=sys.stdout, err=sys.stderr,
    )
    err.print(f"consumed {printed}, undecodable {bad}")


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
    app.add_typer(topics_app, name="topics")
    app.command("produce")(produce)
    app.command("consume")(consume)
