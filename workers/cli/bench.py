"""``distillery bench student`` and ``distillery bench stream``: figures with a same-run baseline."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distillery.errors import ConfigError
from workers.cli.common import JsonOpt, cli_settings, err, out, require_training, write_json

bench_app = typer.Typer(help="Benchmarks that print figures (medians, with a baseline).",
                        no_args_is_help=True)


def _clinc_default() -> Path:
    """CLINC150 as shipped in a source checkout (``datasets/clinc150``)."""
    return Path(__file__).resolve().parents[2] / "datasets" / "clinc150" / "data_full.json"


def _against_torch(title: str, ours: Mapping[str, float], torch: Mapping[str, float],
                   ratio: Mapping[str, float]) -> Table:
    """items/s per batch size, onnxruntime beside torch eager from the same run."""
    table = Table("batch", "onnxruntime items/s", "torch eager items/s", "ratio", title=title)
    for b, rate in ours.items():
        table.add_row(b, f"{rate:,.0f}", f"{torch[b]:,.0f}", f"{ratio[b]:.2f}×")
    return table


@bench_app.command("redact")
def bench_redact(
    n: Annotated[int, typer.Option("--n", min=100, help="Synthetic tickets")] = 5000,
    pii_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share carrying PII")] = 0.2,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    json_file: JsonOpt = None,
) -> None:
    """Decode items/s with every redaction kind on, against decoding alone (same run)."""
    from workers.bench.redact import run_redact_bench

    with err.status(f"decoding {n} tickets, {repeats} times each way"):
        figures = run_redact_bench(n, pii_share, repeats)
    table = Table("decode", "items/s (median)", title=f"redaction, {n} tickets, "
                  f"{pii_share:.0%} with PII")
    table.add_row("alone (baseline)", f"{figures['decode_items_per_s']:,.0f}")
    table.add_row("+ redact all kinds", f"{figures['decode_redact_items_per_s']:,.0f}")
    out.print(table)
    out.print(f"ratio {figures['ratio']:.2f}×; {figures['redactions']} redactions a pass")
    write_json(json_file, figures)


@bench_app.command("student")
def bench_student(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV/JSONL (default: CLINC150 "
                                                      "train split if found)")] = None,
    repeats: Annotated[int, typer.Option(min=1)] = 5,
    json_file: JsonOpt = None,
) -> None:
    """Featurise+infer items/s at batch 1, 32, 256 and training time, vs torch eager."""
    from workers.bench.student import run_student_bench

    require_training("bench student")
    s = cli_settings()
    if data is not None:
        from models.data import read_labelled

        labelled = read_labelled(data)
        rows = list(zip(labelled.texts, labelled.labels, strict=True))
        cut = len(rows) - max(1, len(rows) // 10)
        rows, held = rows[:cut], rows[cut:]
    elif _clinc_default().is_file():
        raw = json.loads(_clinc_default().read_text(encoding="utf-8"))
        rows, held = [(x, y) for x, y in raw["train"]], [(x, y) for x, y in raw["val"]]
    else:
        raise ConfigError("no --data given, and datasets/clinc150 is not here (it ships in "
                          "a source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        figures = run_student_bench(
            s, [x for x, _ in rows], [y for _, y in rows],
            ([x for x, _ in held], [y for _, y in held]), Path(tmp), repeats,
            progress=lambda m: err.print(m))
    out.print(_against_torch(f"student, medians of {repeats} runs", figures["items_per_s"],
                             figures["torch_items_per_s"], figures["ratio_to_baseline"]))
    out.print(f"training on {figures['train_examples']} examples: "
              f"{figures['train_seconds']:.2f} s (median)")
    write_json(json_file, figures)


@bench_app.command("stream")
def bench_stream(
    events: Annotated[int, typer.Option(min=1000, help="Tickets pre-produced per run")] = 60_000,
    repeats: Annotated[int, typer.Option(min=1, help="Runs; medians are reported")] = 3,
    rate: Annotated[float, typer.Option(min=1.0, help="Offered rate for the latency run")] = 1000.0,
    latency_seconds: Annotated[float, typer.Option(min=1.0)] = 10.0,
    workers: Annotated[int, typer.Option(min=1, help="Classify workers in one group for the scaling run")] = 2,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the benchmark's topics")] = 12,
    tiers: Annotated[str, typer.Option(help="ngram (tier 1 alone) or ngram,embed (the cascade through a classify and a refine worker as well)")] = "ngram",
    forward: Annotated[float, typer.Option(min=0.0, max=1.0, help="The cascade run: the share of the stream tier 1 leaves to tier 2")] = 0.4,
    cascade_rate: Annotated[float, typer.Option(min=1.0, help="The cascade run: offered rate for its latency")] = 500.0,
    keep_running: Annotated[bool, typer.Option(help="Keep the benchmark's topics")] = False,
    json_file: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Classify-worker throughput vs a raw passthrough and a plain aiokafka loop; N workers
    in one group against one (scaling); latency at a fixed offered rate; with --tiers
    ngram,embed the whole cascade against the same run's passthrough."""
    from workers.bench.stream import BenchConfig, run_stream_bench
    from workers.runtime.stack import ensure_broker

    tier_list = tuple(t.strip() for t in tiers.split(",") if t.strip())
    if tier_list not in (("ngram",), ("ngram", "embed")):
        raise ConfigError(f"--tiers must be ngram or ngram,embed, got {tiers!r}")
    settings, broker = ensure_broker(cli_settings())
    try:
        cfg = BenchConfig(events, repeats, rate, latency_seconds, workers, partitions,
                          tier_list, forward, cascade_rate)
        figures = run_stream_bench(settings, cfg,
                                   progress=lambda m: err.print(m), keep_topics=keep_running)
    finally:
        if broker is not None:
            broker.stop()
    table = Table("measure", "value", title=f"stream, medians of {repeats} runs of {events:,}")
    table.add_row("classify worker (faust) events/s", f"{figures['events_per_s']:,.0f}")
    table.add_row("raw aiokafka passthrough events/s", f"{figures['passthrough_events_per_s']:,.0f}")
    table.add_row("plain aiokafka loop + process_batch events/s",
                  f"{figures['plain_loop_events_per_s']:,.0f}")
    table.add_row("ratio to the passthrough (median of same-run ratios)", f"{figures['ratio']:.2f}")
    table.add_row("ratio to the plain loop", f"{figures['ratio_to_plain_loop']:.2f}")
    table.add_row(f"{workers} classify workers, one group, events/s",
                  f"{figures['workers_events_per_s']:,.0f}")
    table.add_row(f"scaling ({workers} workers over 1)", f"{figures['scaling']:.2f}")
    table.add_row(f"latency p50 / p99 at {rate:,.0f} events/s",
                  f"{figures['latency_ms']['p50']:.1f} / {figures['latency_ms']['p99']:.1f} ms")
    if "cascade" in figures:
        c = figures["cascade"]
        table.add_row("the cascade (classify + refine worker) events/s",
                      f"{c['events_per_s']:,.0f}")
        table.add_row("the cascade: ratio to the passthrough", f"{c['ratio']:.2f}")
        table.add_row(f"the cascade: share tier 1 forwarded (set for {c['forward_target']:.0%})",
                      f"{c['forwarded_share']:.1%}")
        for tier in ("tier1", "tier2"):
            table.add_row(f"{tier}: CPU ms per item / items per CPU-second",
                          f"{c[tier + '_cpu_ms_per_item']:.3f} / "
                          f"{c[tier + '_items_per_cpu_s']:,.0f}")
        table.add_row(f"the cascade: latency p50 / p99 at {c['offered_rate']:,.0f} events/s",
                      f"{c['latency_ms']['p50']:.1f} / {c['latency_ms']['p99']:.1f} ms")
    out.print(table)
    write_json(json_file, figures)


@bench_app.command("embed")
def bench_embed(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV/JSONL (default: CLINC150 "
                                                      "test split if found)")] = None,
    items: Annotated[int, typer.Option(min=8, help="Texts per run")] = 512,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    threads: Annotated[int, typer.Option(min=1, help="Intra-op threads, both engines")] = 1,
    json_file: JsonOpt = None,
) -> None:
    """Tier-2 encoder items/s at batch 1, 32, 128: onnxruntime vs torch eager; memory."""
    from workers.bench.embed import run_embed_bench

    if data is not None:
        from models.data import read_labelled

        texts = read_labelled(data).texts
    elif _clinc_default().is_file():
        raw = json.loads(_clinc_default().read_text(encoding="utf-8"))
        texts = [str(x) for x, _ in raw["test"]]
    else:
        raise ConfigError("no --data given and no CLINC150 in datasets/clinc150 "
                          "(a source checkout ships it)")
    figures = run_embed_bench(cli_settings(), texts, repeats=repeats, items=items,
                              threads=threads, progress=lambda m: err.print(m))
    out.print(_against_torch(f"tier-2 encoder, medians of {repeats} runs, {threads} thread(s)",
                             figures["items_per_s"], figures["torch_items_per_s"],
                             figures["ratio_to_torch"]))
    rss = figures["rss_mb"]
    out.print(f"resident memory: {rss['start']:.0f} MB at start, "
              f"{rss['after_onnxruntime']:.0f} MB with the onnxruntime encoder, "
              f"{rss['after_torch']:.0f} MB after torch too; "
              f"mean {figures['mean_tokens']:.1f} tokens an item")
    write_json(json_file, figures)


@bench_app.command("faults")
def bench_faults(
    scenario: Annotated[list[str] | None, typer.Option(
        "--scenario", help="Run only these (sigkill, broker, teacher-down, teacher-500, "
                           "malformed, models, sigkill-teacher, sigkill-refine, "
                           "sigkill-trainer, teacher-400); default all")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Run the suite this many times; the "
                                                 "table shows medians (lost: the worst)")] = 1,
    logs: Annotated[Path | None, typer.Option(help="Copy the workers' logs here")] = None,
    json_file: JsonOpt = None,
) -> None:
    """The fault suite: events, lost, duplicated, dead-lettered, time to recover."""
    from workers.bench.faults import SCENARIOS, medians, run_faults

    unknown = sorted(set(scenario or []) - set(SCENARIOS))
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: "
                          f"{', '.join(SCENARIOS)}")
    every = []
    for n in range(runs):
        err.print(f"run {n + 1} of {runs}")
        every.append(run_faults(scenario, progress=lambda m: err.print(m), logs=logs))
    rows = medians([run["scenarios"] for run in every])
    title = "fault suite (one run)" if runs == 1 else f"fault suite (medians of {runs} runs)"
    table = Table(title=title)
    table.add_column("scenario", no_wrap=True)
    for name in ("events", "lost (worst)", "duplicated", "dead-lettered", "recover s"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(row["name"], f"{row['events']:,}", str(row["lost"]),
                      f"{row['duplicated']:g}", f"{row['dead_lettered']:g}",
                      f"{row['recover_s']:.1f}")
    out.print(table)
    write_json(json_file, {"runs": every, "medians": rows})
