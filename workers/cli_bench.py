"""The ``distillery bench`` command group, shared by the student and stream benchmarks."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Benchmarks that print figures (medians, with a baseline).",
                        no_args_is_help=True)
_registered: set[int] = set()


def register(app: typer.Typer) -> None:
    if id(app) not in _registered:
        _registered.add(id(app))
        app.add_typer(bench_app, name="bench")
