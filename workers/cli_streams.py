"""``distillery worker classify``: run the stream processors."""

from __future__ import annotations

import logging
from pathlib import Path
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


def bench_stream(
    events: Annotated[int, typer.Option(min=1000, help="Tickets pre-produced per run")] = 20_000,
    repeats: Annotated[int, typer.Option(min=1, help="Runs; medians are reported")] = 3,
    rate: Annotated[float, typer.Option(min=1.0, help="Offered rate for the latency run")] = 1000.0,
    latency_seconds: Annotated[float, typer.Option(min=1.0)] = 10.0,
    json_file: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Classify-worker throughput vs a raw passthrough and a plain aiokafka loop; latency."""
    import json

    from rich.console import Console
    from rich.table import Table

    from workers.bench_stream import BenchConfig, run_stream_bench
    from workers.stack import ensure_broker

    err = Console(stderr=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings, broker = ensure_broker(load_settings())
    try:
        figures = run_stream_bench(settings, BenchConfig(events, repeats, rate, latency_seconds),
                                   progress=lambda m: err.print(m))
    finally:
        if broker is not None:
            broker.stop()
    table = Table("measure", "value", title=f"stream, medians of {repeats} runs of {events:,}")
    table.add_row("classify worker (faust) events/s", f"{figures['events_per_s']:,.0f}")
    table.add_row("raw aiokafka passthrough events/s", f"{figures['passthrough_events_per_s']:,.0f}")
    table.add_row("plain aiokafka loop + process_batch events/s",
                  f"{figures['plain_loop_events_per_s']:,.0f}")
    table.add_row("ratio to the passthrough", f"{figures['ratio']:.2f}")
    table.add_row("ratio to the plain loop", f"{figures['ratio_to_plain_loop']:.2f}")
    table.add_row(f"latency p50 / p99 at {rate:,.0f} events/s",
                  f"{figures['latency_ms']['p50']:.1f} / {figures['latency_ms']['p99']:.1f} ms")
    Console().print(table)
    if json_file:
        json_file.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def register(app: typer.Typer) -> None:
    from workers import cli_worker
    from workers.cli_bench import bench_app
    from workers.cli_bench import register as register_bench

    cli_worker.worker_app.command("classify")(classify)
    cli_worker.register(app)
    bench_app.command("stream")(bench_stream)
    register_bench(app)
