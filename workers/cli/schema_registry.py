"""``distillery registry``: the embedded Schema Registry (Apicurio Registry), opt-in."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from workers.cli.common import cli_settings, err

registry_app = typer.Typer(help="Run the embedded Schema Registry (opt-in).",
                           no_args_is_help=True)


@registry_app.command("start")
def registry_start() -> None:
    """Start the embedded Schema Registry (building it with Maven on first use); waits until
    it answers, then prints the URL for DISTILLERY_SCHEMA_REGISTRY_URL."""
    from workers.runtime.schema_registry import EmbeddedSchemaRegistry

    registry = EmbeddedSchemaRegistry(cli_settings())
    what = "building and starting" if not registry.built() else "starting"
    with err.status(f"{what} Apicurio Registry {registry.settings.schema_registry_version} "
                    "(the first build takes a minute)"):
        started = registry.start()
    typer.echo(f"embedded Schema Registry {'started' if started else 'is already running'} "
               f"at {registry.url}")
    typer.echo(f"use it with DISTILLERY_SCHEMA_REGISTRY_URL={registry.url}")


@registry_app.command("stop")
def registry_stop() -> None:
    """Stop the embedded Schema Registry; its schemas stay for the next start."""
    from workers.runtime.schema_registry import EmbeddedSchemaRegistry

    stopped = EmbeddedSchemaRegistry(cli_settings()).stop()
    typer.echo("embedded Schema Registry stopped" if stopped
               else "embedded Schema Registry was not running")


@registry_app.command("status")
def registry_status(
    json_file: Annotated[Path | None, typer.Option("--json", help="Write as JSON")] = None,
) -> None:
    """Say whether the embedded Schema Registry runs, at which URL, and where its data is."""
    from workers.runtime.schema_registry import EmbeddedSchemaRegistry

    status = EmbeddedSchemaRegistry(cli_settings()).status()
    if json_file:
        json_file.write_text(json.dumps(asdict(status), indent=2), encoding="utf-8")
    state = "running" if status.running else "stopped"
    typer.echo(f"embedded Schema Registry (Apicurio {status.version}): {state}"
               + (f" (pid {status.pid}) at {status.url}" if status.running else ""))
    typer.echo(f"data: {status.data_dir}\nlog:  {status.log_file}")
    if not status.running:
        raise typer.Exit(1)
