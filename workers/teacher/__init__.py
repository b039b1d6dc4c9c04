"""The teacher: clients (``openai``, ``recorded``, ``oracle``), call policies, the worker.

``make_teacher(settings)`` builds the client ``settings.teacher_kind`` names;
``TeacherWorker(settings, task, teacher).run()`` consumes ``<task>.teacher``.
"""

from __future__ import annotations

from collections.abc import Sequence

from distillery.errors import ConfigError
from distillery.settings import Settings
from workers.teacher.base import (
    InvalidAnswer,
    Teacher,
    TeacherAnswer,
    TeacherCallError,
    canonical_label,
)
from workers.teacher.openai_client import Example, OpenAITeacher
from workers.teacher.policy import Budget, CircuitBreaker, RetryPolicy, cost_of
from workers.teacher.recorded import OracleTeacher, RecordedTeacher
from workers.teacher.store import Outcome, OutcomeStore
from workers.teacher.worker import TeacherWorker, run_worker


def make_teacher(settings: Settings, examples: Sequence[Example] = ()) -> Teacher:
    """The teacher client that ``settings.teacher_kind`` names, configured from settings."""
    if settings.teacher_kind == "openai":
        return OpenAITeacher.from_settings(settings, examples)
    if settings.teacher_kind == "recorded":
        if settings.teacher_recorded_path is None:
            raise ConfigError("teacher kind 'recorded' needs DISTILLERY_TEACHER_RECORDED_PATH")
        return RecordedTeacher(settings.teacher_recorded_path)
    return OracleTeacher(cost_per_call=settings.oracle_cost_per_call)


__all__ = [
    "Budget",
    "CircuitBreaker",
    "Example",
    "InvalidAnswer",
    "OpenAITeacher",
    "OracleTeacher",
    "Outcome",
    "OutcomeStore",
    "RecordedTeacher",
    "RetryPolicy",
    "Teacher",
    "TeacherAnswer",
    "TeacherCallError",
    "TeacherWorker",
    "canonical_label",
    "cost_of",
    "make_teacher",
    "run_worker",
]
