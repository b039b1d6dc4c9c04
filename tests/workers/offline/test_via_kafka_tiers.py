"""``backtest --via-kafka --tiers ngram,embed``: the cascade through real topics and workers
(classify, refine, recorded teacher and trainer as child processes) on a CLINC150 history of
all 150 intents (5 bootstrap items each, then 1,200), beside the in-process run of the same
history.

In lockstep (the default) the stream waits for the loop after each batch — every worker
caught up, a due refresh done, its versions served — as the in-process run does, so the
figures do not depend on the machine's speed. The first stage's share reproduces the
in-process run's; the second stage's does not yet (see the assertions).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from distillery.settings import Settings, load_settings
from models.embed.export import encoder_dir, ensure_encoder
from workers.offline.backtest import BacktestConfig, HistoryRow, run_backtest
from workers.offline.figures import BacktestFigures
from workers.offline.via_kafka import run_via_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N = 1200
KEYS = ("teacher_call_fraction", "coverage", "accuracy")


def _history(clinc_dir: Path) -> tuple[list[tuple[str, str]], list[HistoryRow]]:
    rows = json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))["train"]
    random.Random(0).shuffle(rows)
    seen: dict[str, int] = {}
    boot: list[tuple[str, str]] = []
    stream: list[HistoryRow] = []
    for i, (text, label) in enumerate(rows):
        if seen.get(label, 0) < 5:
            seen[label] = seen.get(label, 0) + 1
            boot.append((text, label))
        elif len(stream) < N:
            stream.append(HistoryRow(f"c{i}", text, label, label))
    return boot, stream


def _line(f: BacktestFigures) -> dict[str, object]:
    return {**{k: round(float(f[k]), 4) for k in KEYS},  # type: ignore[literal-required]
            "tier_shares": {k: round(v, 4) for k, v in f["tier_shares"].items()}}


def test_cascade_backtest_via_kafka(clinc_dir: Path, kafka_bootstrap: str,
                                    tmp_path: Path) -> None:
    real = ensure_encoder(Settings().cache_dir)
    cache = tmp_path / "cache"  # its own cache (the exported encoder linked in)
    encoder_dir(cache).parent.mkdir(parents=True)
    encoder_dir(cache).symlink_to(real, target_is_directory=True)
    s = load_settings(kafka_bootstrap=kafka_bootstrap, student_buckets=1 << 16,
                      state_dir=tmp_path / "state", registry_root=tmp_path / "registry",
                      cache_dir=cache, web_port=6378)
    boot, stream = _history(clinc_dir)
    cfg = BacktestConfig(critical=["freeze_account"], tiers=["ngram", "embed"],
                         audit_rate=s.audit_rate, critical_floor=s.critical_floor)
    local = run_backtest(s, stream, boot, cfg)
    kafka = run_via_kafka(s, stream, boot, cfg, None, progress=lambda m: None,
                          logs=tmp_path / "logs")
    print("in-process", _line(local))
    print("via-kafka ", _line(kafka))

    assert kafka["n"] == local["n"] == N
    assert kafka["tiers"] == local["tiers"] == ["ngram", "embed"]
    shares = kafka["tier_shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["tier1"] + shares["tier2"] == pytest.approx(kafka["coverage"])
    refine_log = (tmp_path / "logs" / "refine-backtest.log").read_text(encoding="utf-8")
    assert shares["tier2"] > 0.0, refine_log[-2000:]
    # in lockstep the first stage reproduces the in-process run (measured: 0.4717 both ways)
    assert abs(shares["tier1"] - local["tier_shares"]["tier1"]) <= 0.01
    # the second stage does not yet: a refresh holds out the most recent verdicts by arrival,
    # and within a batch they arrive through Kafka in another order than the history's (the
    # teacher answers concurrently, critical items skip tier 2), so the early embed-stage
    # gates, on ~30 held-out items, judge other samples (measured: tier 2 decided 0.23-0.37
    # through Kafka against 0.418 in-process); the teacher is called more, which only
    # raises the accuracy
    assert kafka["accuracy"] >= local["accuracy"] - 0.02
