"""``backtest --tiers``: tier 1 alone against the cascade on the same (small) CLINC150
history — at one target, and matched at the same system accuracy (``--sweep``'s
comparison); each tier's share of the decisions; embeddings cached by text hash across runs."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from distillery.settings import Settings
from models.embed.export import encoder_dir, ensure_encoder
from workers.offline.backtest import Backtest, BacktestConfig, HistoryRow
from workers.offline.embedcache import cache_file
from workers.offline.figures import BacktestFigures
from workers.offline.sweep import match, point_of


def _history(clinc_dir: Path) -> tuple[list[tuple[str, str]], list[HistoryRow]]:
    """30 intents (``freeze_account`` among them): 5 each as bootstrap, 400 as the stream."""
    raw = json.loads((clinc_dir / "data_full.json").read_text(encoding="utf-8"))
    rows = raw["train"][:]
    random.Random(0).shuffle(rows)
    names = set(sorted({y for _, y in rows})[::5])
    seen: dict[str, int] = {}
    boot: list[tuple[str, str]] = []
    stream: list[HistoryRow] = []
    for i, (text, label) in enumerate(rows):
        if label not in names:
            continue
        if seen.get(label, 0) < 5:
            seen[label] = seen.get(label, 0) + 1
            boot.append((text, label))
        elif len(stream) < 400:
            stream.append(HistoryRow(f"c{i}", text, label, label))
    return boot, stream


def _run(settings: Settings, boot: list[tuple[str, str]], stream: list[HistoryRow],
         tiers: list[str], target: float = 0.93) -> tuple[BacktestFigures, int]:
    cfg = BacktestConfig(critical=["freeze_account"], tiers=tiers)
    backtest = Backtest(settings.model_copy(update={"accuracy_target": target}), stream, boot,
                        cfg)
    try:
        figures = backtest.run()
    finally:
        if backtest.embeddings is not None:
            backtest.embeddings.close()
    return figures, backtest.embeddings.encoded if backtest.embeddings else 0


def _stored(cache: Path) -> int:
    with sqlite3.connect(cache / "embed" / cache_file(Settings())) as db:
        return int(db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


@pytest.mark.slow
def test_cascade_backtest_against_tier1_alone(clinc_dir: Path, tmp_path: Path) -> None:
    # a cache of its own (the exported encoder linked in, not rebuilt)
    real = ensure_encoder(Settings().cache_dir)
    cache = tmp_path / "cache"
    encoder_dir(cache).parent.mkdir(parents=True)
    encoder_dir(cache).symlink_to(real, target_is_directory=True)
    settings = Settings(registry_root=tmp_path / "registry", cache_dir=cache,
                        student_buckets=1 << 16)
    boot, stream = _history(clinc_dir)

    alone, encoded = _run(settings.model_copy(update={"registry_root": tmp_path / "r1"}),
                          boot, stream, ["ngram"])
    assert alone["tiers"] == ["ngram"] and encoded == 0
    assert alone["tier_shares"]["tier2"] == 0.0
    assert alone["tier_shares"]["tier1"] == pytest.approx(alone["coverage"])
    # tier 1's measured curve: the same history at two more accuracy targets
    curve = [point_of(0.93, alone)] + [point_of(t, _run(settings.model_copy(update={
        "registry_root": tmp_path / f"r1-{t}"}), boot, stream, ["ngram"], t)[0])
        for t in (0.9, 0.97)]

    cascade, encoded = _run(settings.model_copy(update={"registry_root": tmp_path / "r2"}),
                            boot, stream, ["ngram", "embed"])
    shares = cascade["tier_shares"]
    assert cascade["tiers"] == ["ngram", "embed"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["tier1"] + shares["tier2"] == pytest.approx(cascade["coverage"])
    assert any((r.get("tier2") or {}).get("promoted") for r in cascade["refreshes"])
    assert shares["tier2"] > 0.0  # tier 2 decided part of what tier 1 forwarded ...
    # ... so the teacher was asked less than with tier 1 alone on the same history
    assert cascade["teacher_call_fraction"] < alone["teacher_call_fraction"]
    assert encoded == _stored(cache) > 0
    assert cascade["tier_decided_accuracy"]["tier2"] is not None
    # at the same system accuracy (tier 1's curve read at the cascade's) and no lower catch
    # rate, the cascade still asks the teacher less
    same = match(curve, [point_of(0.93, cascade)])[0]
    print("cascade", same)
    assert same["tier1_calls"] is not None, "the cascade's accuracy is outside tier 1's curve"
    assert same["saved"] is not None and same["saved"] > 0
    assert same["catch_no_lower"]

    again, encoded = _run(settings.model_copy(update={"registry_root": tmp_path / "r3"}),
                          boot, stream, ["ngram", "embed"])
    assert encoded == 0  # every text's vector came from the cache
    assert again["tier_shares"] == shares
