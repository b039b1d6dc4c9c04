"""Outcomes remembered by request id and text, so a redelivered request is not paid twice.

An outcome is written as soon as the teacher has answered (before the outputs are sent),
so a crash between the answer and the commit replays the stored outcome instead of calling
the teacher again. The key is the id *and* a hash of the text (``memo_key``): a producer
that reuses an id for a different item gets a new verdict, not an old one. What each
outcome cost is kept with its time, so the budget survives a restart (``spent_since``).

The shared truth is the ledger topic (``workers.teacher.ledger``): every worker of the task
writes its outcomes there and reads everyone's. This SQLite file is each host's cache of it
(one per topic prefix and task, under ``state_dir/teacher``), with the ledger offset read so
far per partition (``checkpoint``), so a restart reads only what is new. It is a cache, not
an in-memory map, because the memory must cover every request the teacher topic can still
redeliver (its retention, a week by default: too much to re-read from the start or hold in
memory at every restart); workers on one host may share it (WAL, a busy timeout). A row
with ``memo`` off records spend only (a dead letter's calls): it counts in the budget and
is never replayed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from distillery.settings import Settings
from distillery.tasks import TaskConfig

OutcomeKind = Literal["answer", "fallback", "dead", "escalate"]


@dataclass(frozen=True)
class Outcome:
    """What became of one request: a teacher answer, a fallback decision, or a dead letter."""

    kind: OutcomeKind
    label: str = ""
    teacher_id: str | None = None
    latency_ms: float = 0.0
    cost: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    calls: int = 0
    error_kind: str = ""
    message: str = ""


def memo_key(request_id: str, text: str) -> str:
    """The memory key of a request: its id and a hash of its text.

    >>> memo_key("a1", "hello")
    'a1#2cf24dba5fb0a30e'
    """
    return f"{request_id}#{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def store_path(settings: Settings, task: TaskConfig) -> Path:
    return settings.state_dir / "teacher" / f"{settings.topic_prefix}{task.name}.sqlite"


def health_path(settings: Settings, task: str) -> Path:
    """The breaker's state, written by the worker when it changes, read by ``status``."""
    return settings.state_dir / "teacher" / f"{settings.topic_prefix}{task}.health.json"


@dataclass(frozen=True)
class Entry:
    """One ledger record: an outcome under its ledger key, with when it was stored.

    ``key`` is the memo key for an outcome to replay (``memo``), or the memo key with
    ``@stored_at`` for a spend-only record, so that it never hides the item's outcome.
    """

    key: str
    outcome: Outcome
    stored_at: float
    memo: bool = True

    @property
    def identity(self) -> tuple[str, float]:
        """What tells one payment from another: the budget counts each identity once."""
        return (self.key, self.stored_at)


def entry_for(key: str, outcome: Outcome, memo: bool = True,
              stored_at: float | None = None) -> Entry:
    at = time.time() if stored_at is None else stored_at
    return Entry(key if memo else f"{key}@{at!r}", outcome, at, memo)


class OutcomeStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes ("
            " id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,"
            " stored_at REAL NOT NULL)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outcomes)")}
        if "memo" not in columns:  # a file from before the ledger: every row is a memo
            self._db.execute("ALTER TABLE outcomes ADD COLUMN memo INTEGER NOT NULL DEFAULT 1")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ledger_offsets ("
            " topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
            " PRIMARY KEY (topic, partition))"
        )
        self._db.commit()

    def get(self, request_id: str) -> Outcome | None:
        row = self._db.execute("SELECT body FROM outcomes WHERE id = ? AND memo = 1",
                               (request_id,)).fetchone()
        return Outcome(**json.loads(row[0])) if row else None

    def put(self, request_id: str, outcome: Outcome) -> Entry:
        """Store an outcome to replay; returns its ledger entry."""
        entry = entry_for(request_id, outcome)
        self.write([entry])
        return entry

    def write(self, entries: Iterable[Entry], checkpoint: dict[tuple[str, int], int] | None = None,
              ) -> None:
        """Store entries and, in the same transaction, how far the ledger has been read."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO outcomes (id, kind, body, stored_at, memo)"
                " VALUES (?, ?, ?, ?, ?)",
                [(e.key, e.outcome.kind, json.dumps(asdict(e.outcome)), e.stored_at,
                  int(e.memo)) for e in entries])
            for (topic, partition), offset in (checkpoint or {}).items():
                self._db.execute(
                    "INSERT INTO ledger_offsets (topic, partition, next_offset) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, partition) DO UPDATE"
                    " SET next_offset = max(next_offset, excluded.next_offset)",
                    (topic, partition, offset))

    def checkpoint(self, topic: str) -> dict[int, int]:
        """The next ledger offset to read, per partition of ``topic`` (none: from the start)."""
        rows = self._db.execute("SELECT partition, next_offset FROM ledger_offsets"
                                " WHERE topic = ?", (topic,)).fetchall()
        return {int(p): int(o) for p, o in rows}

    def forget_checkpoint(self, topic: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM ledger_offsets WHERE topic = ?", (topic,))

    def entries_since(self, since: float) -> list[Entry]:
        """Every entry stored since ``since`` (wall-clock s), spend-only ones included."""
        rows = self._db.execute("SELECT id, body, stored_at, memo FROM outcomes"
                                " WHERE stored_at >= ?", (since,)).fetchall()
        return [Entry(key, Outcome(**json.loads(body)), float(at), bool(memo))
                for key, body, at, memo in rows]

    def spent_since(self, since: float) -> list[tuple[float, int, float]]:
        """(stored_at, calls, cost) of every outcome stored since ``since`` (wall-clock s)."""
        return [(e.stored_at, e.outcome.calls, e.outcome.cost) for e in self.entries_since(since)]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def close(self) -> None:
        self._db.close()
