"""The ``distillery`` command line.

Each command group lives in its own module and registers itself here; this module only
assembles them and turns a ``DistilleryError`` into one readable line and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer

from distillery.errors import DistilleryError

app = typer.Typer(
    name="distillery",
    help="Distil an expensive teacher model into a cheap student on a live Kafka stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    # Imported here so that a command group's heavy imports (torch, faust) load only once,
    # and each module stays the single owner of its commands.
    from workers import cli_kafka

    registrars: list[Callable[[typer.Typer], None]] = [cli_kafka.register]
    for optional in (
        "cli_student", "cli_streams", "cli_teacher", "cli_trainer", "cli_generate",
        "cli_report", "cli_main",
    ):
        try:
            module = __import__(f"workers.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"workers.{optional}":
                raise
            continue
        registrars.append(module.register)
    for register in registrars:
        register(app)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _register_all()
    try:
        app(args=argv, standalone_mode=True)
    except DistilleryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file that cannot be read or written: one line, not a traceback
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
