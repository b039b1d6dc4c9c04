"""A backtest history with blank texts: they are skipped with a warning (a stream
dead-letters such events), not a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from workers.offline.backtest import load_history


def test_blank_texts_are_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                           ) -> None:
    path = tmp_path / "history.csv"
    path.write_text('id,text,teacher\na,"I was charged twice",billing\nb,"",spam\n'
                    'c,"   ",spam\nd,"reset my password",account\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        rows = load_history(path, "text", "id", "teacher", None)
    assert [r.id for r in rows] == ["a", "d"]
    assert "2 rows with a blank text skipped" in caplog.text and "b, c" in caplog.text
