"""``distillery deadletter replay``: re-drive dead letters to their source once fixed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from workers.cli.common import JsonOpt, TasksOpt, cli_settings, err, out, tasks_of, write_json

deadletter_app = typer.Typer(help="The dead-letter topic: what failed, and re-driving it",
                             no_args_is_help=True)


@deadletter_app.command("replay")
def replay(
    task: TasksOpt = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", "-k", help="Only letters of this error kind (repeatable; default: all)")] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="From the first letter, not from where the last replay ended")
    ] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be re-driven; produce and commit nothing")] = False,
    json_file: JsonOpt = None,
) -> None:
    """Produce dead letters again to the topic they came from (their original bytes, or the
    record at their source offset) and remember how far this got."""
    from workers.records.redrive import redrive

    s = cli_settings()
    shown = [0]

    def progress(done: int, total: int) -> None:
        if done == total or done - shown[0] >= 1000:
            shown[0] = done
            err.print(f"{done:,} of {total:,} dead letters read")

    result = redrive(s, tasks_of(s, task), kinds=set(kind) if kind else None,
                     from_beginning=from_beginning, dry_run=dry_run, progress=progress)
    table = Table("error kind", "re-driven" + (" (dry run)" if dry_run else ""), "skipped",
                  title=f"dead letters: {result.scanned:,} read")
    for name in sorted(set(result.replayed) | set(result.skipped)):
        table.add_row(name, str(result.replayed.get(name, 0)), str(result.skipped.get(name, 0)))
    out.print(table)
    if result.from_source:
        out.print(f"{result.from_source} re-read at their source offset (the letter kept a "
                  "prefix only)")
    if result.lost:
        out.print(f"{len(result.lost)} not recoverable (neither whole in the letter nor at "
                  f"the source any more), e.g. {result.lost[0]}")
    write_json(json_file, result.as_dict())
