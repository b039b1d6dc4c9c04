"""``distillery broker`` (the embedded Kafka broker) and ``distillery topics`` (the catalogue)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from distillery.errors import ConfigError
from workers.cli.common import cli_settings, err

broker_app = typer.Typer(help="Run the embedded single-node Kafka broker.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and inspect the topic catalogue.", no_args_is_help=True)


SecureOpt = Annotated[bool, typer.Option(
    "--secure", help="The SASL_SSL broker with SCRAM users per role and ACLs "
    "(its own data, under <state_dir>/broker-secure)")]


@broker_app.command("start")
def broker_start(secure: SecureOpt = False) -> None:
    """Start the embedded broker (fetching Kafka's jars on first use); waits until it answers."""
    from workers.runtime.broker import EmbeddedBroker

    broker = EmbeddedBroker(cli_settings(), secure=secure)
    with err.status(f"starting Kafka {broker.settings.kafka_version} on {broker.bootstrap}"):
        started = broker.start()
    verb = "started" if started else "is already running"
    kind = "secure (SASL_SSL, SCRAM-SHA-512, ACLs) " if secure else ""
    typer.echo(f"embedded {kind}Kafka {broker.settings.kafka_version} {verb} on "
               f"{broker.bootstrap}")
    if broker.secure is not None:
        _grant(broker)
        typer.echo(f"connect as a role with DISTILLERY_CONFIG={broker.secure.folder}/<role>.toml"
                   " (roles: admin, classify, refine, teacher, trainer, client)")


@broker_app.command("acls")
def broker_acls() -> None:
    """Grant every role its ACLs on the secure broker for this topic prefix and these tasks
    (``broker start --secure`` does it for the settings it starts with)."""
    from workers.runtime.broker import EmbeddedBroker

    broker = EmbeddedBroker(cli_settings(), secure=True)
    if broker.pid() is None:
        raise ConfigError("the secure broker is not running: `distillery broker start --secure`")
    _grant(broker)


def _grant(broker: Any) -> None:
    from distillery.tasks import load_tasks
    from workers.runtime.secure import grant_roles

    count = grant_roles(broker.client_settings("admin"), list(load_tasks(broker.settings).values()))
    prefix = broker.settings.topic_prefix or "(no prefix)"
    typer.echo(f"{count} ACLs for topic prefix {prefix} granted")


@broker_app.command("stop")
def broker_stop(secure: SecureOpt = False) -> None:
    """Stop the embedded broker; its data stays for the next start."""
    from workers.runtime.broker import EmbeddedBroker

    stopped = EmbeddedBroker(cli_settings(), secure=secure).stop()
    typer.echo("embedded Kafka stopped" if stopped else "embedded Kafka was not running")


@broker_app.command("status")
def broker_status(
    secure: SecureOpt = False,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write as JSON")] = None,
) -> None:
    """Say whether the embedded broker runs, where, and where its data and log are."""
    from workers.runtime.broker import EmbeddedBroker

    status = EmbeddedBroker(cli_settings(), secure=secure).status()
    if json_file:
        json_file.write_text(json.dumps(asdict(status), indent=2), encoding="utf-8")
    state = "running" if status.running else "stopped"
    typer.echo(f"embedded Kafka {status.kafka_version}: {state}"
               + (f" (pid {status.pid}) on {status.bootstrap}" if status.running else ""))
    typer.echo(f"data: {status.data_dir}\nlog:  {status.log_file}")
    if not status.running:
        raise typer.Exit(1)


@broker_app.command("logs")
def broker_logs(lines: Annotated[int, typer.Option("-n", "--lines", min=1)] = 50,
                secure: SecureOpt = False) -> None:
    """Print the last lines of the embedded broker's log."""
    from workers.runtime.broker import EmbeddedBroker

    for line in EmbeddedBroker(cli_settings(), secure=secure).logs(lines):
        typer.echo(line)


@topics_app.command("create")
def topics_create() -> None:
    """Create every catalogue topic that does not exist yet (idempotent)."""
    from streams.topics import catalogue, create_topics

    s = cli_settings()
    created = create_topics(s)
    total = len(catalogue(s))
    typer.echo(f"{len(created)} topics created, {total - len(created)} already existed")


@topics_app.command("list")
def topics_list() -> None:
    """List the topics under the configured prefix, and which catalogue topics are missing."""
    from streams.topics import catalogue, list_topics

    s = cli_settings()
    existing = set(list_topics(s))
    table = Table("topic", "schema", "partitions", "exists")
    for spec in catalogue(s):
        table.add_row(spec.name, spec.schema, str(spec.partitions),
                      "yes" if spec.name in existing else "no")
    Console().print(table)


@topics_app.command("describe")
def topics_describe(names: Annotated[list[str] | None, typer.Argument(help="Catalogue names (the prefix is applied) or full names")] = None) -> None:
    """Partitions and config of topics (default: the whole catalogue)."""
    from streams.topics import catalogue, describe_topics, list_topics
    from workers.cli.records import resolve_topic

    s = cli_settings()
    existing = set(list_topics(s))
    wanted = ([resolve_topic(s, n, say=False) for n in names] if names
              else [spec.name for spec in catalogue(s) if spec.name in existing])
    missing = [n for n in wanted if n not in existing]
    if missing:
        raise ConfigError(f"no such topic: {', '.join(missing)}")
    for row in describe_topics(s, wanted):
        typer.echo(json.dumps(row))
