"""``distillery up | down | status | demo``: the whole system on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from workers.cli.common import TasksOpt, cli_settings, err, out, tasks_of, write_json


def up(task: TasksOpt = None) -> None:
    """Start the broker (embedded unless configured), create the topics, run every worker."""
    from workers.runtime.stack import children, prepare
    from workers.runtime.supervisor import Supervisor

    s = cli_settings()
    tasks = tasks_of(s, task)
    s, _ = prepare(s, tasks)
    logs = s.state_dir / "logs"
    kids = children(s, tasks, logs)
    out.print(f"distillery up on {s.kafka_bootstrap}: {', '.join(c.name for c in kids)}; "
              f"logs in {logs}; stop with `distillery down` or Ctrl-C")
    Supervisor(s, kids).run()


def down(stop_broker: Annotated[bool, typer.Option(help="Also stop the embedded broker")] = True) -> None:
    """Stop a running `distillery up` (and the embedded broker)."""
    from workers.runtime.broker import EmbeddedBroker
    from workers.runtime.supervisor import stop_running

    s = cli_settings()
    stopped = stop_running(s)
    out.print("workers stopped" if stopped else "no `distillery up` was running")
    if stop_broker and "kafka_bootstrap" not in s.model_fields_set:
        out.print("embedded Kafka stopped" if EmbeddedBroker(s).stop()
                  else "embedded Kafka was not running")


def status(json_file: Annotated[Path | None, typer.Option("--json")] = None) -> None:
    """Each component, its consumer lag and the serving model per task."""
    from workers.runtime.status import gather

    s = cli_settings()
    figures = gather(s, tasks_of(s, None))
    table = Table("component", "state", "detail", title="distillery status")
    for row in figures["components"]:
        table.add_row(row["name"], row["state"], row.get("detail", ""))
    out.print(table)
    write_json(json_file, figures)


def demo(
    n: Annotated[int, typer.Option("--n", min=100, help="Events per task")] = 2000,
    rate: Annotated[float, typer.Option("--rate", min=1.0, help="Events per second, all tasks")] = 100.0,
    task: TasksOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the report goes")] = Path("distillery-demo"),
    keep_running: Annotated[bool, typer.Option(help="Leave the workers and broker running")] = False,
    json_file: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """The whole loop on synthetic streams with the oracle teacher, under its own topic prefix."""
    from workers.sim.demo import run_demo

    s = cli_settings()
    figures = run_demo(s, tasks_of(s, task), n, rate, out_dir, keep_running, console=err)
    table = Table("figure", "value", title="demo")
    for key in ("events", "decided_by_student", "decided_by_teacher", "dead_lettered", "lost",
                "model_versions", "student_share_last_1000", "seconds"):
        value = figures[key]
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table)
    out.print(f"report: {figures['report']}")
    write_json(json_file, figures)
    if figures["lost"]:
        raise typer.Exit(1)
