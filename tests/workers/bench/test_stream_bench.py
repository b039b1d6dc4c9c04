"""``distillery bench stream --tiers ngram,embed`` at a size CI can afford: every run of it
(passthrough, plain loop, one and two classify workers on tier 1 alone, the cascade through a
classify and a refine worker) gets every event out, and the cascade's figures are there.
Speed is not asserted here: the command prints it, against the same run's passthrough."""

from __future__ import annotations

import pytest

from distillery.settings import Settings
from workers.bench.stream import BenchConfig, run_stream_bench

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_stream_bench_runs_tier_1_and_the_cascade(kafka_settings: Settings) -> None:
    cfg = BenchConfig(events=3000, repeats=1, offered_rate=200.0, latency_seconds=3.0,
                      workers=2, partitions=4, tiers=("ngram", "embed"), forward=0.4,
                      cascade_offered_rate=200.0)
    figures = run_stream_bench(kafka_settings, cfg, progress=print)
    for key in ("events_per_s", "passthrough_events_per_s", "plain_loop_events_per_s",
                "workers_events_per_s", "ratio", "scaling", "latency_ms"):
        assert key in figures, key  # today's keys, kept
    cascade = figures["cascade"]
    assert cascade["tiers"] == ["ngram", "embed"]
    assert cascade["events_per_s"] > 0 and cascade["ratio"] > 0
    # tier 1's thresholds sit at the 40% quantile of its confidence on another sample of
    # the same generator: about that share reaches tier 2
    assert 0.25 <= cascade["forwarded_share"] <= 0.55, cascade
    assert cascade["tier1_cpu_ms_per_item"] > 0 and cascade["tier2_cpu_ms_per_item"] > 0
    assert 0 < cascade["latency_ms"]["p50"] <= cascade["latency_ms"]["p99"]
