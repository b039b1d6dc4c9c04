"""Teachers that call no model: ``recorded`` (past verdicts) and ``oracle`` (simulations).

``recorded`` answers from a CSV or JSONL file of a team's past teacher outputs
(``DISTILLERY_TEACHER_RECORDED_PATH``): each row has ``label`` and ``id`` and/or ``text``;
optional columns ``cost``, ``tokens_in``, ``tokens_out``, ``teacher_id``. A request is
matched by id first, then by exact text. It is what replays and backtests use.

``oracle`` is for simulations, tests and the demo only: it answers with the label the
producer hid in the item's ``metadata["oracle_label"]`` (the synthetic generators know the
truth). It must not be used on real traffic — it would "teach" whatever the metadata says.
It can simulate a price per call so that budgets can be exercised without a model.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from distillery.errors import ConfigError
from distillery.tasks import TaskConfig
from schemas.records import TeacherRequest
from workers.teacher.base import TeacherAnswer, TeacherCallError, canonical_label

ORACLE_KEY = "oracle_label"


def read_rows(path: Path) -> list[dict[str, Any]]:
    from models.data import read_rows as read_data_rows

    if not path.is_file():
        raise ConfigError(f"recorded verdicts file not found: {path}")
    return read_data_rows(path)


def _number(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if value not in (None, "") else 0.0


class RecordedTeacher:
    """Past verdicts from a file, looked up by id, then by exact text."""

    def __init__(self, path: Path, teacher_id: str | None = None) -> None:
        self.path = Path(path)
        self.teacher_id = teacher_id or f"recorded:{self.path.name}"
        self.by_id: dict[str, TeacherAnswer] = {}
        self.by_text: dict[str, TeacherAnswer] = {}
        for number, row in enumerate(read_rows(self.path), start=1):
            label = str(row.get("label") or "").strip()
            item_id, text = row.get("id"), row.get("text")
            if not label or not (item_id or text):
                raise ConfigError(f"{self.path}: row {number} needs a label and an id or a text")
            verdict = TeacherAnswer(
                label, str(row.get("teacher_id") or self.teacher_id), cost=_number(row, "cost"),
                tokens_in=int(_number(row, "tokens_in")),
                tokens_out=int(_number(row, "tokens_out")))
            if item_id:
                self.by_id[str(item_id)] = verdict
            if text:
                self.by_text[str(text)] = verdict

    async def aclose(self) -> None:
        return None

    async def decide(self, request: TeacherRequest, task: TaskConfig) -> TeacherAnswer:
        started = time.perf_counter()
        verdict = self.by_id.get(request.id) or self.by_text.get(request.text)
        if verdict is None:
            raise TeacherCallError(f"no recorded verdict for id {request.id} or its text",
                                   kind="unknown_item", retriable=False)
        return replace(verdict, label=canonical_label(verdict.label, task),
                       latency_ms=(time.perf_counter() - started) * 1000)


class OracleTeacher:
    """Answers ``request.metadata["oracle_label"]``: for simulations and the demo only."""

    def __init__(self, cost_per_call: float = 0.0, latency_s: float = 0.0,
                 teacher_id: str = "oracle") -> None:
        self.cost_per_call = cost_per_call
        self.latency_s = latency_s
        self.teacher_id = teacher_id

    async def aclose(self) -> None:
        return None

    async def decide(self, request: TeacherRequest, task: TaskConfig) -> TeacherAnswer:
        started = time.perf_counter()
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        answer = request.metadata.get(ORACLE_KEY)
        if answer is None:
            raise TeacherCallError(f"request {request.id} carries no metadata.{ORACLE_KEY}",
                                   kind="unknown_item", retriable=False)
        label = canonical_label(answer, task)
        return TeacherAnswer(label, self.teacher_id, (time.perf_counter() - started) * 1000,
                             self.cost_per_call)
