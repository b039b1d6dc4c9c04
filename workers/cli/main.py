"""The ``distillery`` command line: assembles the command groups, one module each.

A ``DistilleryError`` (or an unreadable file) becomes one ``error: ...`` line and exit code 2.
Heavy imports (torch, faust) happen inside the commands, so ``distillery --help`` is quick.
"""

from __future__ import annotations

import logging
import sys

import typer

from distillery.errors import DistilleryError
from workers.cli import (
    bench,
    broker,
    deadletter,
    generate,
    offline,
    records,
    report,
    schema_registry,
    stack,
    student,
    worker,
)

app = typer.Typer(
    name="distillery",
    help="Distil an expensive teacher model into a cheap student on a live Kafka stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(broker.broker_app, name="broker")
app.add_typer(broker.topics_app, name="topics")
app.add_typer(schema_registry.registry_app, name="registry")
app.command("produce")(records.produce)
app.command("consume")(records.consume)
app.command("generate")(generate.generate_cmd)
app.command("train")(student.train)
app.command("evaluate")(student.evaluate)
app.add_typer(student.models_app, name="models")
app.add_typer(worker.worker_app, name="worker")
app.command("replay")(offline.replay)
app.add_typer(deadletter.deadletter_app, name="deadletter")
app.command("backtest")(offline.backtest)
app.command("report")(report.report_cmd)
app.command("up")(stack.up)
app.command("down")(stack.down)
app.command("status")(stack.status)
app.command("demo")(stack.demo)
app.add_typer(bench.bench_app, name="bench")


# libraries whose INFO and WARNING lines mean nothing to a user at the terminal (kafka-python's
# event-loop timing, aiokafka's rebalances): only their errors reach it. A worker process
# (``distillery worker ...``, what ``up`` and the demo start) logs them in full to its log.
QUIET_LIBRARIES = ("kafka", "aiokafka", "faust", "mode", "httpx", "httpcore")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (argv if argv is not None else sys.argv[1:])[:1] != ["worker"]:
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        app(args=argv, standalone_mode=True)
    except DistilleryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file that cannot be read or written: one line, not a traceback
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
