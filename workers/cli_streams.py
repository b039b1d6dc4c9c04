"""``distillery worker classify``: run the stream processors."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from distillery.errors import ConfigError
from distillery.settings import load_settings
from distillery.tasks import load_tasks


def classify(
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Task to classify (repeatable; default: all)")] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of the worker's web server and /metrics")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Classify input topics with the student; route to results, teacher and dead-letter topics."""
    from streams.app import run_worker
    from streams.topics import create_topics

    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = load_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    known = load_tasks(settings)
    wanted = task or sorted(known)
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise ConfigError(f"unknown task {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    create_topics(settings)
    run_worker(settings, [known[t] for t in wanted], loglevel=loglevel)


def register(app: typer.Typer) -> None:
    from workers import cli_worker

    cli_worker.worker_app.command("classify")(classify)
    cli_worker.register(app)
