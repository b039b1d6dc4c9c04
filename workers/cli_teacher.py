"""``distillery worker teacher --task T``: decide what the student defers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from distillery.settings import load_settings
from distillery.tasks import get_task


def teacher(
    task: Annotated[str, typer.Option("--task", "-t", help="Task whose <task>.teacher to serve")],
    metrics_port: Annotated[
        Optional[int],  # noqa: UP045 - typer reads the annotation
        typer.Option(help="Port of /metrics (0: off; default: DISTILLERY_METRICS_PORT)"),
    ] = None,
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
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = load_settings()
    config = get_task(settings, task)
    shots = load_examples(examples, config) if examples is not None else []
    create_topics(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    worker = TeacherWorker(settings, config, make_teacher(settings, shots), metrics_port=port)
    run_worker(worker)


def register(app: typer.Typer) -> None:
    from workers import cli_worker

    cli_worker.worker_app.command("teacher")(teacher)
    cli_worker.register(app)
