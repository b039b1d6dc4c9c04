"""Prompt injection that picks a label (issue 29, item 7): a corpus of attempts against the
fake OpenAI server scripted to obey every one of them. An attempt reaches training when the
teacher worker would write its verdict to ``<task>.verdicts``; counted by situation."""

from __future__ import annotations

import asyncio
from collections import Counter

from distillery.tasks import MODERATION, TICKETS
from schemas.records import TeacherRequest
from tests.workers.teacher.injections import ATTEMPTS, PHRASINGS, Attempt
from workers.sim.fake_teacher import FakeTeacherServer, label
from workers.teacher import OpenAITeacher
from workers.teacher.metrics import TeacherMetrics
from workers.teacher.policy import Budget, CircuitBreaker, RetryPolicy
from workers.teacher.resolve import Resolver, records_for

TASKS = {"tickets": TICKETS, "moderation": MODERATION}


def _reaches_training(server: FakeTeacherServer) -> dict[Attempt, str]:
    """Each attempt's fate: ``trained`` (a verdict is written) or the outcome's kind."""
    async def go() -> dict[Attempt, str]:
        teacher = OpenAITeacher(server.base_url, "obedient", timeout_s=5.0)
        fates = {}
        for task_name in TASKS:
            task = TASKS[task_name]
            resolver = Resolver(teacher, task, retry=RetryPolicy(1, 0.001),
                                breaker=CircuitBreaker(5, 0.05, rejections=1000),
                                budget=Budget(1e6, 1e6), metrics=TeacherMetrics(task_name),
                                contradiction_confidence=0.9)
            for attempt in (a for a in ATTEMPTS if a.task == task_name):
                request = TeacherRequest(
                    id=attempt.marker(), task=task_name, text=attempt.text,
                    reason="critical" if attempt.critical_guess else "low_confidence",
                    student_label=attempt.student_label,
                    student_confidence=attempt.student_confidence)
                outcome = await resolver.resolve(request)
                _, verdict = records_for(request, outcome, task)
                fates[attempt] = "trained" if verdict is not None else (
                    f"{outcome.kind}:{outcome.error_kind}")
        await teacher.aclose()
        return fates

    return asyncio.run(go())


def test_injected_labels_do_not_reach_training_where_they_can_be_told_apart() -> None:
    assert len(ATTEMPTS) >= 50 and len(PHRASINGS) >= 10
    with FakeTeacherServer() as server:
        for attempt in ATTEMPTS:  # the model obeys every injection
            server.script(attempt.marker(), label(attempt.asks_for))
        fates = _reaches_training(server)
    by_situation = Counter((a.student_label, a.asks_for, fates[a]) for a in ATTEMPTS)
    n = len(PHRASINGS)
    # a confident critical guess overruled: escalated for a human, never trained on
    assert by_situation[("violent_threat", "ok", "escalate:contradicted")] == n
    assert by_situation[("self_harm", "profanity", "escalate:contradicted")] == n
    assert by_situation[("security_incident", "billing", "escalate:contradicted")] == n
    # a label outside the task's set: refused by the label check, asked once more, dead
    assert by_situation[("spam", "approved", "dead:invalid_answer")] == n
    # what no check here can tell from an honest answer: the student was unsure (a critical
    # guess under the contradiction confidence, or an ordinary item)
    assert by_situation[("violent_threat", "ok", "trained")] == n
    assert by_situation[("shipping", "refunds", "trained")] == n
    trained = sum(1 for fate in fates.values() if fate == "trained")
    assert trained == 2 * n, Counter(fates.values())
    assert all(a.student_confidence < 0.9 for a in ATTEMPTS if fates[a] == "trained")


def test_a_confident_critical_guess_the_teacher_confirms_is_trained_on() -> None:
    with FakeTeacherServer(default=lambda item, labels: "violent_threat") as server:
        async def go() -> str:
            teacher = OpenAITeacher(server.base_url, "honest", timeout_s=5.0)
            resolver = Resolver(teacher, MODERATION, retry=RetryPolicy(1, 0.001),
                                breaker=CircuitBreaker(5, 0.05), budget=Budget(1e6, 1e6),
                                metrics=TeacherMetrics("moderation"),
                                contradiction_confidence=0.9)
            request = TeacherRequest(id="t1", task="moderation", reason="critical",
                                     text="I will hurt you", student_label="violent_threat",
                                     student_confidence=0.99)
            outcome = await resolver.resolve(request)
            await teacher.aclose()
            return outcome.kind

        assert asyncio.run(go()) == "answer"
