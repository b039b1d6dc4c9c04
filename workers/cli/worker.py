"""``distillery worker classify | teacher | trainer | refine``: run one worker in the foreground."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from distillery.tasks import get_task
from workers.cli.common import (
    MetricsPortOpt,
    TasksOpt,
    cli_settings,
    err,
    require_training,
    tasks_of,
)

worker_app = typer.Typer(help="Run one of distillery's workers.", no_args_is_help=True)


@worker_app.command("classify")
def classify(
    task: TasksOpt = None,
    web_port: Annotated[int | None, typer.Option(help="Port of the worker's web server and /metrics")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Classify input topics with the student; route to results, teacher and dead-letter topics."""
    from streams.app import run_worker
    from streams.topics import create_topics

    settings = cli_settings(web_port=web_port)
    tasks = tasks_of(settings, task)
    create_topics(settings)
    run_worker(settings, tasks, loglevel=loglevel)


@worker_app.command("teacher")
def teacher(
    task: Annotated[str, typer.Option("--task", "-t", help="Task whose <task>.teacher to serve")],
    metrics_port: MetricsPortOpt = None,
    examples: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Few-shot examples for the openai teacher: CSV or JSONL, text,label"),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Consume <task>.teacher; emit decisions, verdicts and dead letters (at-least-once)."""
    from streams.topics import create_topics
    from workers.teacher import TeacherWorker, make_teacher, run_worker
    from workers.teacher.examples import load_examples

    logging.getLogger().setLevel(loglevel.upper())
    settings = cli_settings()
    config = get_task(settings, task)
    shots = load_examples(examples, config) if examples is not None else []
    create_topics(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    worker = TeacherWorker(settings, config, make_teacher(settings, shots), metrics_port=port)
    run_worker(worker)


@worker_app.command("trainer")
def trainer(
    task: Annotated[str, typer.Option("--task", "-t")],
    bootstrap: Annotated[Path | None, typer.Option(help="Labelled text,label file to start from")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild the store from the topics first")] = False,
) -> None:
    """Consume verdicts and feedback into the training store; refresh the student periodically."""
    from models.data import read_pairs
    from workers.trainer.consume import rebuild_store
    from workers.trainer.worker import run_trainer, store_refresher

    require_training("the trainer worker")
    settings = cli_settings()
    config = get_task(settings, task)
    rows = read_pairs(bootstrap) if bootstrap else []
    if rebuild:
        count = asyncio.run(rebuild_store(settings, config))
        err.print(f"rebuilt the training store from {count} messages")
    run_trainer(settings, config, store_refresher(settings, config, rows))


@worker_app.command("refine")
def refine(
    task: Annotated[str, typer.Option("--task", "-t", help="Task whose <task>.refine to serve")],
    metrics_port: MetricsPortOpt = None,
    loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Tier 2 of the cascade: consume <task>.refine; decide what the tier-2 policy accepts and
    forward the rest to <task>.teacher with both tiers' scores (at-least-once)."""
    from streams.refine import run_refine
    from streams.topics import create_topics

    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = cli_settings()
    config = get_task(settings, task)
    if not config.cascade:
        from distillery.errors import ConfigError

        raise ConfigError(f"task {config.name} does not enable the embed tier (tiers = "
                          f"{config.tiers}): set tiers = [\"ngram\", \"embed\"] in its tasks file")
    create_topics(settings)
    run_refine(settings, config, settings.metrics_port if metrics_port is None else metrics_port)
