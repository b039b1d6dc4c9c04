"""``distillery up | down | status | demo``: the whole system on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from workers.cli.common import (
    TasksOpt,
    cli_settings,
    err,
    out,
    require_training,
    tasks_of,
    write_json,
)


def up(
    task: TasksOpt = None,
    classify_workers: Annotated[int, typer.Option(
        "--classify-workers", min=1,
        help="Classify workers in the one consumer group (web ports DISTILLERY_WEB_PORT, +1, ...)",
    )] = 1,
    teacher_workers: Annotated[int, typer.Option(
        "--teacher-workers", min=1,
        help="Teacher workers per task, in one group (one budget and verdict memory: "
             "<task>.teacher.ledger)",
    )] = 1,
    refine_workers: Annotated[int, typer.Option(
        "--refine-workers", min=1,
        help="Refine workers (tier 2 of the cascade) per task that runs it, in one group",
    )] = 1,
    secure: Annotated[bool, typer.Option(
        "--secure", help="On the embedded SASL_SSL broker with ACLs (`broker start --secure`), "
        "each worker as its own role")] = False,
) -> None:
    """Start the broker (embedded unless configured), create the topics, run every worker."""
    from workers.runtime.broker import EmbeddedBroker
    from workers.runtime.stack import children, prepare
    from workers.runtime.supervisor import Supervisor

    s = cli_settings()
    tasks = tasks_of(s, task)
    s, _ = prepare(s, tasks, secure)
    logs = s.state_dir / "logs"
    kids = children(s, tasks, logs, classify_workers=classify_workers,
                    teacher_workers=teacher_workers, refine_workers=refine_workers,
                    roles=EmbeddedBroker(s, secure=True).secure if secure else None)
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
    if stop_broker and EmbeddedBroker(s, secure=True).stop():
        out.print("embedded secure Kafka stopped")


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
    n: Annotated[int, typer.Option("--n", min=100, help="At most this many events per task")] = 6000,
    after_student: Annotated[int, typer.Option(min=0, help="Events per task after its student's first decision")] = 1500,
    rate: Annotated[float, typer.Option("--rate", min=1.0, help="Events per second, all tasks")] = 100.0,
    price: Annotated[float, typer.Option(min=0.0, help="Notional price of one teacher call, for the report's cost chart")] = 0.001,
    task: TasksOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the report goes")] = Path("distillery-demo"),
    keep_running: Annotated[bool, typer.Option(help="Leave the workers, broker, topics and models in place")] = False,
    json_file: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """The whole loop on synthetic streams with the oracle teacher, under its own topic prefix."""
    from workers.sim.demo import DemoPlan, run_demo

    require_training("the demo's trainer")
    s = cli_settings()
    plan = DemoPlan(n=n, after_student=after_student, rate=rate)
    figures = run_demo(s, tasks_of(s, task), plan, out_dir, keep_running, console=err,
                       price=price)
    table = Table("figure", "value", title="demo")
    for key in ("events", "decided_by_student", "decided_by_teacher", "dead_lettered", "lost",
                "model_versions", "student_share_last_1000",
                "seconds_to_first_student_decision",
                "seconds_from_broker_to_first_student_decision", "seconds"):
        value = figures[key]  # type: ignore[literal-required]
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table)
    out.print(f"report: {figures['report']}"
              + ("" if figures["cleaned_up"] or keep_running
                 else f" (could not delete the {figures['topic_prefix']}* topics)"))
    write_json(json_file, figures)
    if figures["lost"]:
        raise typer.Exit(1)
