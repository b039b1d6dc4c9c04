"""Outcomes remembered by request id and text, so a redelivered request is not paid twice.

An outcome is written as soon as the teacher has answered (before the outputs are sent),
so a crash between the answer and the commit replays the stored outcome instead of calling
the teacher again. The key is the id *and* a hash of the text (``memo_key``): a producer
that reuses an id for a different item gets a new verdict, not an old one. What each
outcome cost is kept with its time, so the budget survives a restart (``spent_since``).
One SQLite file per topic prefix and task, under ``state_dir/teacher``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
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


class OutcomeStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes ("
            " id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,"
            " stored_at REAL NOT NULL)"
        )
        self._db.commit()

    def get(self, request_id: str) -> Outcome | None:
        row = self._db.execute("SELECT body FROM outcomes WHERE id = ?", (request_id,)).fetchone()
        return Outcome(**json.loads(row[0])) if row else None

    def put(self, request_id: str, outcome: Outcome) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO outcomes (id, kind, body, stored_at) VALUES (?, ?, ?, ?)",
            (request_id, outcome.kind, json.dumps(asdict(outcome)), time.time()),
        )
        self._db.commit()

    def spent_since(self, since: float) -> list[tuple[float, int, float]]:
        """(stored_at, calls, cost) of every outcome stored since ``since`` (wall-clock s)."""
        rows = self._db.execute("SELECT stored_at, body FROM outcomes WHERE stored_at >= ?",
                                (since,)).fetchall()
        out = []
        for stored_at, body in rows:
            data = json.loads(body)
            out.append((float(stored_at), int(data.get("calls", 0)), float(data.get("cost", 0))))
        return out

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def close(self) -> None:
        self._db.close()
