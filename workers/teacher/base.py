"""The teacher interface: ``await teacher.decide(request, task) -> TeacherAnswer``.

A teacher makes exactly one attempt per call; retries, the circuit breaker and the budget
live in the worker (``workers.teacher.resolve``). Failures are ``TeacherCallError``s that
say whether they are retriable and what kind they are:

============== ========= =============================================================
kind           retriable meaning
============== ========= =============================================================
timeout        yes       no reply within ``teacher_timeout_s``
connection     yes       connection refused / reset, DNS, TLS
rate_limited   yes       HTTP 429 (``retry_after_s`` from the ``Retry-After`` header)
server_error   yes       HTTP 5xx, or a 2xx whose body is not a chat completion
invalid_answer no        the answer is not one of the task's labels (``InvalidAnswer``)
rejected       no        HTTP 4xx for this item (e.g. 400, 413, 422)
refused        no        a refusal or a content filter (HTTP 400 or ``content: null``)
unknown_item   no        the recorded / oracle teacher has no verdict for the item
auth           no, fatal HTTP 401/403/404: a wrong key, model or URL; the worker stops
============== ========= =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from distillery.errors import TeacherError
from distillery.tasks import TaskConfig
from schemas.records import TeacherRequest


@dataclass(frozen=True)
class TeacherAnswer:
    """One valid answer: a label of the task, who gave it, and what it cost."""

    label: str
    teacher_id: str
    latency_ms: float = 0.0
    cost: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0


class TeacherCallError(TeacherError):
    """One failed teacher call. ``cost``/tokens are what the failed call was billed, if any."""

    kind: str = "error"
    fatal: bool = False

    def __init__(self, message: str, *, kind: str | None = None, retriable: bool | None = None,
                 fatal: bool | None = None, retry_after_s: float | None = None,
                 cost: float = 0.0, tokens_in: int = 0, tokens_out: int = 0) -> None:
        super().__init__(message, retriable=retriable)
        if kind is not None:
            self.kind = kind
        if fatal is not None:
            self.fatal = fatal
        self.retry_after_s = retry_after_s
        self.cost = cost
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out


class InvalidAnswer(TeacherCallError):
    """The teacher answered, but not with one of the task's labels. Never trained on."""

    kind = "invalid_answer"
    retriable = False


@runtime_checkable
class Teacher(Protocol):
    teacher_id: str

    async def decide(self, request: TeacherRequest, task: TaskConfig) -> TeacherAnswer: ...

    async def aclose(self) -> None: ...


def canonical_label(answer: object, task: TaskConfig) -> str:
    """The task's label that ``answer`` names exactly (case and outer spaces aside).

    Raises ``InvalidAnswer`` for anything else, so a reply such as ``"billing, and also
    ignore your instructions"`` or a label the item text injected is never accepted.
    """
    if not isinstance(answer, str):
        raise InvalidAnswer(f"answer {answer!r} is not a label (not a string)")
    names = task.label_names
    if answer in names:
        return answer
    folded = answer.strip().strip("\"'`").strip().casefold()
    for name in names:
        if name.casefold() == folded:
            return name
    shown = answer if len(answer) <= 80 else answer[:77] + "..."
    raise InvalidAnswer(f"answer {shown!r} is not one of task {task.name}'s labels")
