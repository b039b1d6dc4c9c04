"""Backtest histories built from a labelled dataset, shared by the tests that need one."""

from __future__ import annotations

import random
from collections.abc import Sequence

from workers.offline.backtest import HistoryRow


def seed_and_stream(rows: Sequence[Sequence[str]], prefix: str, per_label: int = 5
                    ) -> tuple[list[tuple[str, str]], list[HistoryRow]]:
    """``rows`` (text, label) shuffled with seed 0: the first ``per_label`` of each label as
    the seed, the rest as the stream (ids ``<prefix>N``, the teacher answering the label)."""
    shuffled = list(rows)
    random.Random(0).shuffle(shuffled)
    seen: dict[str, int] = {}
    seed: list[tuple[str, str]] = []
    stream: list[HistoryRow] = []
    for text, label in shuffled:
        if seen.get(label, 0) < per_label:
            seen[label] = seen.get(label, 0) + 1
            seed.append((text, label))
        else:
            stream.append(HistoryRow(f"{prefix}{len(stream)}", text, label, label))
    return seed, stream
