"""``distillery replay`` and ``distillery backtest``: topic ranges and recorded histories."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from distillery.errors import ConfigError
from distillery.settings import Settings
from distillery.tasks import DEFAULT_TIERS, get_task
from workers.cli.common import cli_settings, err, out, write_json

if TYPE_CHECKING:
    from workers.offline.figures import BacktestFigures


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an ISO 8601 time, got {value!r}") from exc
    if stamp.tzinfo is None:
        raise ConfigError(f"{name} needs a time zone, e.g. {value}+00:00")
    return stamp


def replay(
    topic: Annotated[str, typer.Option(help="Topic to replay: a catalogue name (the prefix is applied) or a full name")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    since: Annotated[str | None, typer.Option(help="ISO time to start from")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time to stop at")] = None,
    retrain: Annotated[bool, typer.Option(help="Rebuild a training set from a verdicts topic and train")] = False,
    to: Annotated[str | None, typer.Option(help="Re-score an input topic into this topic")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Task (default: from the topic)")] = None,
) -> None:
    """Replay a topic range to retrain (--retrain) or to re-score into another topic (--to)."""
    from workers.trainer.replay import rescore, retrain_from

    if retrain == (to is not None):
        raise ConfigError("replay needs exactly one of --retrain or --to TOPIC")
    if not from_beginning and since is None:
        raise ConfigError("replay needs --from-beginning or --since TIME")
    from workers.cli.records import resolve_topic

    s = cli_settings()
    topic = resolve_topic(s, topic)
    to = resolve_topic(s, to) if to is not None else None
    t = get_task(s, task or _task_of(s, topic))
    window = (_time(since, "--since"), _time(until, "--until"))
    if retrain:
        outcome = retrain_from(s, t, topic, *window)
        out.print(f"{t.name}: {outcome['version']} "
                  f"{'promoted' if outcome['promoted'] else 'rejected'} — {outcome['reason']}")
    else:
        assert to is not None
        done = rescore(s, t, topic, to, *window)
        out.print(f"re-scored {done['scored']} events into {to} with {done['version']}; "
                  f"{done['to_teacher']} critical or low-confidence sent to the teacher "
                  f"({done['dead']} undecodable skipped)")


def _task_of(s: Settings, topic: str) -> str:
    from streams.topics import catalogue

    for spec in catalogue(s):
        if spec.name == topic and spec.task:
            return spec.task
    raise ConfigError(f"cannot tell the task of {topic!r}; pass --task")


def backtest(
    data: Annotated[Path, typer.Option(help="History: CSV or JSONL")],
    teacher_col: Annotated[str, typer.Option(help="The teacher's recorded label")] = "label",
    text_col: Annotated[str, typer.Option()] = "text",
    id_col: Annotated[str | None, typer.Option()] = None,
    gold_col: Annotated[str | None, typer.Option(help="Ground truth, if known")] = None,
    bootstrap: Annotated[Path | None, typer.Option(help="Labelled text,label rows to start from")] = None,
    retrain_every: Annotated[int | None, typer.Option(min=1, help="Teacher verdicts between refreshes once warm (default: REFRESH_EVERY_VERDICTS)")] = None,
    critical: Annotated[str | None, typer.Option(help="Critical labels, comma-separated")] = None,
    shuffle: Annotated[int | None, typer.Option(help="Shuffle the history with this seed")] = None,
    accuracy_target: Annotated[float | None, typer.Option(min=0.5, max=1.0, help="Accuracy of the decided part (default: ACCURACY_TARGET)")] = None,
    audit_rate: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    critical_floor: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    calibration_z: Annotated[float | None, typer.Option(min=0.0)] = None,
    volume_per_day: Annotated[float | None, typer.Option(min=0.0, help="Items a day (default: the history's size)")] = None,
    teacher_cost_per_call: Annotated[float | None, typer.Option(min=0.0, help="Default: estimated from the token prices")] = None,
    via_kafka: Annotated[bool, typer.Option(help="Run through real topics and workers")] = False,
    rate: Annotated[float | None, typer.Option(min=0.1, help="With --via-kafka: produce at this many items a second, the workers racing the stream (default: in lockstep with the loop, which reproduces the in-process run)")] = None,
    tiers: Annotated[str | None, typer.Option(help="Student tiers, comma-separated: ngram,embed (the cascade; with --via-kafka a refine worker runs tier 2) or ngram (tier 1 alone); default: the tasks' default")] = None,
    json_file: Annotated[Path | None, typer.Option("--json")] = None,
    sweep: Annotated[str | None, typer.Option(help="Accuracy targets, comma-separated: one run per target (with ngram,embed: tier 1 alone too, and the two compared at the same accuracy)")] = None,
) -> None:
    """Run a recorded history through the routing, student and trainer; compare with the teacher."""
    from models.data import read_pairs
    from workers.offline.backtest import BacktestConfig, load_history, run_backtest

    s = cli_settings(audit_rate=audit_rate, critical_floor=critical_floor,
                     accuracy_target=accuracy_target, calibration_z=calibration_z)
    history = load_history(data, text_col, id_col, teacher_col, gold_col)
    boot = read_pairs(bootstrap) if bootstrap else []
    tier_list: list[str] = ([t.strip() for t in tiers.split(",") if t.strip()]
                            if tiers is not None else list(DEFAULT_TIERS))
    if tier_list not in (["ngram"], ["ngram", "embed"]):
        raise ConfigError(f"--tiers must be ngram or ngram,embed, got {tiers!r}")
    cfg = BacktestConfig(retrain_every=retrain_every, tiers=tier_list,
                         critical=[c for c in (critical or "").split(",") if c],
                         audit_rate=s.audit_rate, critical_floor=s.critical_floor,
                         volume_per_day=volume_per_day,
                         teacher_cost_per_call=teacher_cost_per_call)
    if sweep is not None:
        if via_kafka:
            raise ConfigError("--sweep runs in-process only (not with --via-kafka)")
        write_json(json_file, _sweep(s, history, boot, cfg, _targets(sweep), shuffle))
        return
    if rate is not None and not via_kafka:
        raise ConfigError("--rate paces a --via-kafka run; add --via-kafka")
    if via_kafka:
        from workers.offline.via_kafka import run_via_kafka

        figures = run_via_kafka(s, history, boot, cfg, shuffle, progress=err.print,
                                rate=rate or 150.0, lockstep=rate is None)
    else:
        with Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.description}"), console=err, transient=True) as bar:
            job = bar.add_task("", total=len(history))

            def tick(done: int, state: dict[str, Any]) -> None:
                bar.update(job, completed=done, description=(
                    f"student {state['student_share']:.0%}, refreshes {state['refreshes']}"))

            figures = run_backtest(s, history, boot, cfg, shuffle, progress=tick)
    _print_backtest(figures)
    write_json(json_file, figures)


def _print_backtest(f: BacktestFigures) -> None:
    table = Table("", "distilled", "teacher only", title=f"backtest over {f['n']} items")
    table.add_row("teacher calls", f"{f['teacher_call_fraction']:.1%}", "100.0%")
    table.add_row("accuracy" + f" (vs {f.get('accuracy_against', 'gold')})",
                  f"{f['accuracy']:.4f}", f"{f['teacher_only_accuracy']:.4f}")
    table.add_row("decided by the student (coverage)", f"{f['coverage']:.1%}", "0.0%")
    shares = f.get("tier_shares", {})
    if "embed" in f.get("tiers", []):
        table.add_row("  of which tier 1 (n-grams) / tier 2 (embeddings)",
                      f"{shares.get('tier1', 0.0):.1%} / {shares.get('tier2', 0.0):.1%}", "")
    decided = f["decided_accuracy"]
    table.add_row(f"accuracy of the decided part (target {f['accuracy_target']})",
                  "-" if decided is None else f"{decided:.4f}", "")
    for lam, value in f["discounted_accuracy"].items():
        table.add_row(f"discounted accuracy λ={lam}", f"{value:.4f}",
                      f"{f['teacher_only_discounted_accuracy'][lam]:.4f}")
    for label, catch in f["catch_rate"].items():
        table.add_row(f"catch rate {label} (critical)",
                      "-" if catch is None else f"{catch:.3f}", "1.000")
    e = f["economics"]
    table.add_row(f"teacher cost per day ({e['volume_per_day']:,.0f} items)",
                  f"{e['distilled_teacher_cost_per_day']:,.2f} + pipeline "
                  f"{e['pipeline_cost_per_day']:,.2f}", f"{e['teacher_only_cost_per_day']:,.2f}")
    out.print(table)
    if f["curve"]:
        curve = Table("accuracy target", "teacher calls", "system accuracy", "decided accuracy",
                      *(f"catch {c}" for c in f["catch_rate"]),
                      title="calls against accuracy over the target (● the chosen one)",
                      caption=f["curve_note"])
        for p in f["curve"]:
            curve.add_row(f"{'● ' if p['chosen'] else ''}{p['target']}",
                          f"{p['teacher_call_fraction']:.1%}", f"{p['system_accuracy']:.4f}",
                          "-" if p["decided_accuracy"] is None else f"{p['decided_accuracy']:.4f}",
                          *("-" if v is None else f"{v:.3f}" for v in p["catch_rate"].values()))
        curve.add_row("teacher only", "100.0%", f"{f['teacher_only_accuracy']:.4f}", "-",
                      *("1.000" for _ in f["catch_rate"]))
        out.print(curve)
    served = f["first_served_at"]
    out.print("first student served after "
              + (f"{served:,} items" if served is not None else "— none served"))
    out.print(f"verdict: distillation {e['verdict']} (price per call "
              f"{e['teacher_cost_per_call']:.6f}, {e['price_source']}; volume "
              f"{e['volume_source']})")


def _targets(value: str) -> list[float]:
    try:
        targets = sorted({float(t) for t in value.split(",") if t.strip()})
    except ValueError as exc:
        raise ConfigError(f"--sweep takes accuracy targets like 0.9,0.93,0.95, got {value!r}"
                          ) from exc
    if not targets or not all(0.5 <= t <= 1.0 for t in targets):
        raise ConfigError(f"--sweep targets must lie in [0.5, 1], got {value!r}")
    return targets


def _sweep(s: Settings, history: list[Any], boot: list[tuple[str, str]], cfg: Any,
           targets: list[float], shuffle: int | None) -> dict[str, Any]:
    """``--sweep``: the measured curve per tier set and, for a cascade, the matched table."""
    from dataclasses import replace

    from workers.offline.sweep import match, run_sweep

    systems = [["ngram"], ["ngram", "embed"]] if "embed" in cfg.tiers else [["ngram"]]
    points = {",".join(t): run_sweep(s, history, boot, replace(cfg, tiers=t), targets, shuffle,
                                     progress=err.print) for t in systems}
    table = Table("tiers", "accuracy target", "teacher calls", "system accuracy",
                  "decided accuracy", "tier 1 / tier 2", *(f"catch {c}" for c in cfg.critical),
                  title=f"measured over {len(history)} items, one run per target")
    for name, runs in points.items():
        for p in runs:
            sh, dec = p["tier_shares"], p["decided_accuracy"]
            table.add_row(name, f"{p['target']}", f"{p['teacher_call_fraction']:.1%}",
                          f"{p['system_accuracy']:.4f}", "-" if dec is None else f"{dec:.4f}",
                          f"{sh['tier1']:.1%} / {sh['tier2']:.1%}",
                          *("-" if v is None else f"{v:.3f}" for v in p["catch_rate"].values()))
    out.print(table)
    result: dict[str, Any] = {"targets": targets, "points": points}
    if len(systems) == 2:
        matched = match(points["ngram"], points["ngram,embed"])
        result["matched"] = matched
        same = Table("cascade at target", "its system accuracy", "cascade calls",
                     "tier 1 alone's calls there", "fewer calls", "catch no lower",
                     title="tier 1 alone against the cascade at the same system accuracy",
                     caption="tier 1's calls interpolated along its measured frontier")
        for m in matched:
            t1, saved = m["tier1_calls"], m["saved"]
            same.add_row(f"{m['target']}", f"{m['system_accuracy']:.4f}",
                         f"{m['cascade_calls']:.1%}",
                         "outside tier 1's range" if t1 is None else f"{t1:.1%}",
                         "-" if saved is None else f"{saved:+.1%}",
                         "-" if m["catch_no_lower"] is None else
                         ("yes" if m["catch_no_lower"] else "no"))
        out.print(same)
    return result
