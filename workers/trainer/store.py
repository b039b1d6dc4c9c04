"""The trainer's durable training store: verdicts and feedback by id, in SQLite.

It holds exactly what the ``<task>.verdicts`` and ``<task>.feedback`` topics say, keyed by
id (a later record for an id replaces the earlier one), so it can be rebuilt from scratch
by replaying those topics. It also keeps where it has read to and the refresh history.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.records import Feedback, TeacherVerdict
from workers.trainer.embeddings import SCHEMA as EMBEDDINGS_SCHEMA

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
  id TEXT PRIMARY KEY, text TEXT NOT NULL, label TEXT NOT NULL, teacher_id TEXT NOT NULL,
  reason TEXT NOT NULL, student_label TEXT, student_confidence REAL, decided_at TEXT NOT NULL,
  seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
  id TEXT PRIMARY KEY, label TEXT NOT NULL, source TEXT NOT NULL, observed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (topic TEXT, partition INTEGER, next_offset INTEGER,
  PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS refreshes (
  n INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, promoted INTEGER NOT NULL,
  version TEXT, reason TEXT NOT NULL, report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + EMBEDDINGS_SCHEMA


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str
    source: str  # "verdict", "feedback" (gold label over a verdict) or "bootstrap"
    reason: str  # why the teacher was asked ("audit", "low_confidence", ...) or "bootstrap"
    gold: bool  # the label comes from feedback (ground truth)
    order: int  # event-time order, for a time-ordered holdout
    tier2: bool = False  # the verdict names a tier2_version (it went through tier 2); with
    # reason "audit" it audits a tier-2 decision and is weighted as a tier-2 audit


class TrainingStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # check_same_thread=False: refreshes read it from a worker thread while the
        # consumer loop waits for them, never at the same time.
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(verdicts)")}
        if "tier2_version" not in columns:  # a store written before tier 2
            self.db.execute("ALTER TABLE verdicts ADD COLUMN tier2_version TEXT")
        if "event_ms" not in columns:  # a store written before event times
            self.db.execute("ALTER TABLE verdicts ADD COLUMN event_ms INTEGER")
        self.db.commit()
        # The arrival counter, read once: a MAX(seq) scan per insert made ingestion quadratic.
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM verdicts").fetchone()
        self._seq = int(row[0])

    def close(self) -> None:
        self.db.close()

    # --- writes -------------------------------------------------------------------------
    def add_verdict(self, verdict: TeacherVerdict, event_ms: int | None = None) -> None:
        """Store (or update) a verdict; ``event_ms`` is its record's timestamp, which the
        workers carry over from the input event it answers (its event time)."""
        self._seq += 1
        seq = self._seq
        self.db.execute(
            "INSERT INTO verdicts (id, text, label, teacher_id, reason, student_label, "
            "student_confidence, decided_at, seq, tier2_version, event_ms) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET "
            "text=excluded.text, label=excluded.label, teacher_id=excluded.teacher_id, "
            "reason=excluded.reason, student_label=excluded.student_label, "
            "student_confidence=excluded.student_confidence, decided_at=excluded.decided_at, "
            "tier2_version=excluded.tier2_version, event_ms=excluded.event_ms",
            (verdict.id, verdict.text, verdict.label, verdict.teacher_id, verdict.reason,
             verdict.student_label, verdict.student_confidence, verdict.decided_at.isoformat(),
             seq, verdict.tier2_version, event_ms),
        )

    def add_feedback(self, feedback: Feedback) -> None:
        self.db.execute(
            "INSERT INTO feedback VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "label=excluded.label, source=excluded.source, observed_at=excluded.observed_at",
            (feedback.id, feedback.label, feedback.source, feedback.observed_at.isoformat()),
        )

    def set_position(self, topic: str, partition: int, next_offset: int) -> None:
        self.db.execute(
            "INSERT INTO positions VALUES (?,?,?) ON CONFLICT(topic, partition) DO UPDATE SET "
            "next_offset=excluded.next_offset",
            (topic, partition, next_offset),
        )

    def commit(self) -> None:
        self.db.commit()

    def record_refresh(self, at: str, promoted: bool, version: str | None, reason: str,
                       report: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO refreshes (at, promoted, version, reason, report) VALUES (?,?,?,?,?)",
            (at, int(promoted), version, reason, json.dumps(report)),
        )
        self.db.commit()

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET "
                        "value=excluded.value", (key, value))
        self.db.commit()

    # --- reads --------------------------------------------------------------------------
    def get_meta(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def positions(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, partition, next_offset FROM positions")
        return {(t, p): o for t, p, o in rows}

    def counts(self) -> dict[str, int]:
        one = self.db.execute
        return {
            "verdicts": int(one("SELECT COUNT(*) FROM verdicts").fetchone()[0]),
            "feedback": int(one("SELECT COUNT(*) FROM feedback").fetchone()[0]),
            "refreshes": int(one("SELECT COUNT(*) FROM refreshes").fetchone()[0]),
            "promotions": int(one("SELECT COUNT(*) FROM refreshes WHERE promoted=1")
                              .fetchone()[0]),
        }

    def refreshes(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT n, at, promoted, version, reason, report FROM refreshes ORDER BY n"
        )
        return [
            {"n": n, "at": at, "promoted": bool(p), "version": v, "reason": r,
             "report": json.loads(rep)}
            for n, at, p, v, r, rep in rows
        ]

    def examples(self) -> tuple[list[Example], int]:
        """Training examples in event-time order, and how many verdicts feedback contradicted.

        Ordered by the time of the event each verdict answers, then by arrival: the teacher
        answers concurrently, so arrival order differs from one run to the next where event
        time does not (verdicts stored without one come first, by arrival)."""
        rows = self.db.execute(
            "SELECT v.id, v.text, v.label, v.reason, f.label, v.seq, v.tier2_version "
            "FROM verdicts v LEFT JOIN feedback f ON f.id = v.id "
            "ORDER BY v.event_ms IS NOT NULL, v.event_ms, v.seq"
        )
        out: list[Example] = []
        contradicted = 0
        for order, (item_id, text, label, reason, gold, _, tier2) in enumerate(rows):
            if gold is not None and gold != label:
                contradicted += 1
            out.append(Example(
                id=item_id, text=text, label=gold if gold is not None else label,
                source="feedback" if gold is not None else "verdict", reason=reason,
                gold=gold is not None, order=order, tier2=tier2 is not None,
            ))
        return out, contradicted

    def snapshot(self) -> Iterator[tuple[str, str, str]]:
        """(id, text, label) of every training row: to compare a rebuilt store with a live one."""
        examples, _ = self.examples()
        for ex in sorted(examples, key=lambda e: e.id):
            yield ex.id, ex.text, ex.label
