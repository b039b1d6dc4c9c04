"""What every command module shares: settings with quiet Kafka loggers, task lookup, output.

Commands stay thin — parse, call a plain function, print — and take these few helpers from
here instead of each keeping its own copy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from distillery.settings import Settings, load_settings
from distillery.tasks import TaskConfig, resolve_tasks

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON")]
TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task name")]
TasksOpt = Annotated[
    list[str] | None, typer.Option("--task", "-t", help="Task (repeatable; default: all)")
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(help="Port of /metrics (0: off; default: DISTILLERY_METRICS_PORT)"),
]

_CHATTY_LOGGERS = ("kafka", "aiokafka", "httpx")


def cli_settings(**overrides: Any) -> Settings:
    """The settings, with options left unset (``None``) ignored and client loggers quiet
    (at least WARNING: never lower than ``workers.cli.main`` set them for the terminal).
    The Schema Registry they name, if any, is the process's from here on."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))
    from schemas.registry import use_registry

    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    use_registry(settings)  # a Schema Registry, when one is configured
    return settings


def tasks_of(settings: Settings, names: list[str] | None) -> list[TaskConfig]:
    """The named tasks (all when ``names`` is empty); an unknown name is a ``ConfigError``."""
    return resolve_tasks(settings, names)


def write_json(path: Path | None, data: Any) -> None:
    """Write ``data`` as indented JSON when a path was given (``--json FILE``)."""
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def require_training(what: str) -> None:
    """A clear error when torch (the ``train`` extra) is not installed: serving installs
    leave it out, and ``what`` needs it."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        from distillery.errors import ConfigError

        raise ConfigError(f"{what} trains students and needs torch: "
                          "pip install 'distillery[train]'")
