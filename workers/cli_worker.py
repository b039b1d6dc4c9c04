"""The ``distillery worker`` command group; each worker module adds its command to it."""

from __future__ import annotations

import typer

worker_app = typer.Typer(help="Run one of distillery's workers.", no_args_is_help=True)
_registered: set[int] = set()


def register(app: typer.Typer) -> None:
    """Add the ``worker`` group to ``app`` once, however many modules call this."""
    if id(app) in _registered:
        return
    _registered.add(id(app))
    app.add_typer(worker_app, name="worker")
