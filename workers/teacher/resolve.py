"""From a teacher request to an ``Outcome``, through the call policies; and the records.

``Resolver.resolve`` calls the teacher under bounded concurrency, the budget and the
circuit breaker, retries retriable failures with backoff, retries an invalid answer once,
and falls back to the student's carried prediction when the task allows it. Its rules:

- an invalid answer (not one of the labels) is asked again once, then given up on;
- a non-retriable failure (HTTP 4xx, a refusal, an unknown item) is given up on at once;
- an item given up on is dead-lettered with the reason, unless it is critical: then it is
  escalated to ``<task>.escalations`` for a human — never a silent end;
- ``rejections`` non-retriable answers of one kind in a row (``BLANKET_KINDS``: HTTP 4xx,
  no label) open the breaker (an endpoint that refuses everything): from then on an item
  refused that way waits for it, like an outage, instead of being dead-lettered;
- a retriable failure (timeout, connection, 429, 5xx) is retried with backoff,
  ``max_retries`` times with a growing delay and then at the longest delay, like an outage
  (a 50% error storm must not dead-letter the unlucky items); the breaker opens on
  consecutive failures and then every item waits. Only an item that failed
  ``give_up_tries`` times (probes of the open breaker not counted) over ``give_up_s`` is
  given up on: escalated to ``<task>.escalations`` (``retries_exhausted``), never
  dead-lettered, and its partition's offset moves on;
- while the teacher is unavailable (breaker open or budget spent) a request waits, unless
  the task's ``policy.fallback`` is on, the request is not critical (nor an audit), carries
  a student label, and is older than ``policy.deadline_s``: then it is decided by fallback;
- a fatal failure (bad key, model or URL) is raised: the worker stops;
- an answer from a teacher that reads the item's text (``contradiction_confidence`` set:
  the LLM) that contradicts the student's guess of a critical label held at or above that
  confidence is escalated (``contradicted``), not trained on: text inside the item that
  talks the model into "ok" must not teach the student to miss what it caught.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from distillery.tasks import TaskConfig
from schemas.records import Decision, DecisionReason, TeacherRequest, TeacherVerdict
from workers.teacher.base import Teacher, TeacherAnswer, TeacherCallError
from workers.teacher.metrics import TeacherMetrics
from workers.teacher.policy import (
    BREAKER_STATE_VALUE,
    Budget,
    CircuitBreaker,
    Clock,
    RetryPolicy,
)
from workers.teacher.store import Outcome, OutcomeKind

log = logging.getLogger(__name__)


# Non-retriable kinds that, repeated, mean the endpoint refuses everything (a proxy answering
# 4xx, a model that answers no label). ``refused`` (a content filter) and ``unknown_item``
# are about one item: a moderation stream can bring many in a row.
BLANKET_KINDS = frozenset({"rejected", "invalid_answer"})


class Abandoned(Exception):
    """The worker is stopping: this request is left uncommitted, to be redelivered."""


@dataclass
class _Tally:
    calls: int = 0
    tries: int = 0  # calls that count toward the give-up cap (not an open breaker's probes)
    cost: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0

    def add(self, cost: float, tokens_in: int, tokens_out: int) -> None:
        self.calls += 1
        self.cost += cost
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out


def is_critical(request: TeacherRequest, task: TaskConfig) -> bool:
    return request.reason == "critical" or request.student_label in task.critical_labels


def may_fall_back(request: TeacherRequest, task: TaskConfig, now: float) -> bool:
    """Fallback is allowed for this request now (``now``: wall-clock seconds)."""
    return (
        task.policy.fallback
        and request.reason != "audit"
        and not is_critical(request, task)
        and request.student_label in task.label_names
        and now - request.requested_at.timestamp() >= task.policy.deadline_s
    )


class Resolver:
    def __init__(self, teacher: Teacher, task: TaskConfig, *, retry: RetryPolicy,
                 breaker: CircuitBreaker, budget: Budget, metrics: TeacherMetrics,
                 concurrency: int = 4, wall: Clock = time.time, poll_s: float = 0.05,
                 contradiction_confidence: float | None = None) -> None:
        self.teacher = teacher
        self.task = task
        self.retry = retry
        self.breaker = breaker
        self.budget = budget
        self.metrics = metrics
        self.wall = wall
        self.poll_s = poll_s
        self.contradiction_confidence = contradiction_confidence
        self.stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._opened_seen = 0

    def available(self) -> bool:
        """Could a call go out now, as far as the breaker and the budget are concerned?"""
        self.refresh_gauges()
        return self.breaker.state != "open" and self.budget.available()

    def refresh_gauges(self) -> None:
        self.metrics.breaker.set(BREAKER_STATE_VALUE[self.breaker.state])
        if self.breaker.opened_count > self._opened_seen:
            self.metrics.breaker_opened.labels(self.task.name, self.breaker.cause).inc(
                self.breaker.opened_count - self._opened_seen)
            self._opened_seen = self.breaker.opened_count
        self.metrics.budget_calls_left.set(self.budget.calls_left)
        self.metrics.budget_cost_left.set(self.budget.cost_left)
        self.metrics.budget_calls_cap.set(self.budget.calls_per_minute)
        self.metrics.budget_cost_cap.set(self.budget.cost_per_hour)

    async def resolve(self, request: TeacherRequest) -> Outcome:
        started, tally = time.perf_counter(), _Tally()
        retries = invalid = 0
        while True:
            answer = await self._attempt(request, tally)
            if isinstance(answer, Outcome):
                return answer
            if isinstance(answer, TeacherAnswer):
                if self._contradicts(request, answer.label):
                    return _contradicted(request, answer, tally, started)
                return _answered(answer, tally, started)
            exc = answer
            if exc.fatal:
                raise exc
            if not exc.retriable and self.breaker.rejecting(exc.kind):
                log.info("request %s: %s; the teacher refuses everything: it waits for the "
                         "breaker", request.id, exc)
                continue
            if exc.kind == "invalid_answer":
                invalid += 1
                if invalid <= 1:
                    log.info("request %s: invalid answer, asking once more: %s", request.id, exc)
                    self.metrics.retries.inc()
                    continue
                return _given_up(request, self.task, exc, tally, started)
            if not exc.retriable:
                return _given_up(request, self.task, exc, tally, started)
            if self.retry.exhausted(tally.tries, time.perf_counter() - started):
                return _exhausted(request, exc, tally, started)
            if not self.retry.should_retry(retries) and retries == self.retry.max_retries:
                log.warning("request %s: %s after %d retries; it waits and retries at the "
                            "longest delay until the teacher answers", request.id, exc, retries)
            delay = self.retry.delay(min(retries, self.retry.max_retries), exc.retry_after_s)
            retries += 1
            self.metrics.retries.inc()
            log.info("request %s: %s; retry %d in %.2fs", request.id, exc, retries, delay)
            await self._sleep(delay)

    def _contradicts(self, request: TeacherRequest, label: str) -> bool:
        """Does ``label`` overrule the student's confident guess of a critical label?"""
        floor = self.contradiction_confidence
        return (floor is not None and request.student_label in self.task.critical_labels
                and (request.student_confidence or 0.0) >= floor
                and label != request.student_label)

    async def _attempt(self, request: TeacherRequest,
                       tally: _Tally) -> Outcome | TeacherAnswer | TeacherCallError:
        """One call once the gate opens, or a fallback outcome while it stays shut."""
        while True:
            if not self.available() and may_fall_back(request, self.task, self.wall()):
                return _fallback(request)
            async with self._slots:
                if self.stopping.is_set():
                    raise Abandoned()
                probe = self.breaker.state == "half_open"
                if self.budget.available() and self.breaker.allow():
                    self.budget.try_acquire()
                    tally.tries += 0 if probe else 1
                    return await self._call(request, tally)
            await self._sleep(self.poll_s)

    async def _call(self, request: TeacherRequest,
                    tally: _Tally) -> TeacherAnswer | TeacherCallError:
        try:
            answer = await self.teacher.decide(request, self.task)
        except TeacherCallError as exc:
            tally.add(exc.cost, exc.tokens_in, exc.tokens_out)
            self.budget.add_cost(exc.cost)
            self.metrics.call(exc.kind, exc.cost, exc.tokens_in, exc.tokens_out)
            self.metrics.failure(exc.kind)
            if exc.retriable:
                self.breaker.record_failure()
            elif exc.kind in BLANKET_KINDS:
                self.breaker.record_rejection(exc.kind)  # it answered, but refused
            elif not exc.fatal:
                self.breaker.record_success()  # an item's own refusal: it is up
            return exc
        except asyncio.CancelledError:
            self.breaker.release_probe()
            raise
        tally.add(answer.cost, answer.tokens_in, answer.tokens_out)
        self.budget.add_cost(answer.cost)
        self.breaker.record_success()
        self.metrics.call("ok", answer.cost, answer.tokens_in, answer.tokens_out)
        self.metrics.latency.observe(answer.latency_ms / 1000)
        return answer

    async def _sleep(self, seconds: float) -> None:
        if self.stopping.is_set():
            raise Abandoned()
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Abandoned()


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _answered(answer: TeacherAnswer, tally: _Tally, started: float) -> Outcome:
    return Outcome("answer", answer.label, answer.teacher_id, _elapsed_ms(started), tally.cost,
                   tally.tokens_in, tally.tokens_out, tally.calls)


def _given_up(request: TeacherRequest, task: TaskConfig, exc: TeacherCallError,
              tally: _Tally, started: float) -> Outcome:
    """A non-retriable end: escalated for a critical item, dead-lettered otherwise."""
    kind: OutcomeKind = "escalate" if is_critical(request, task) else "dead"
    return Outcome(kind, latency_ms=_elapsed_ms(started), cost=tally.cost,
                   tokens_in=tally.tokens_in, tokens_out=tally.tokens_out, calls=tally.calls,
                   error_kind=exc.kind, message=str(exc))


def _exhausted(request: TeacherRequest, exc: TeacherCallError, tally: _Tally,
               started: float) -> Outcome:
    """A retriable failure past the give-up caps: escalated for a human, with the reason."""
    seconds = time.perf_counter() - started
    log.warning("request %s: giving up after %d tries over %.0fs (the last: %s): escalated",
                request.id, tally.tries, seconds, exc)
    return Outcome("escalate", latency_ms=seconds * 1000, cost=tally.cost,
                   tokens_in=tally.tokens_in, tokens_out=tally.tokens_out, calls=tally.calls,
                   error_kind="retries_exhausted",
                   message=f"{tally.tries} tries over {seconds:.0f}s; the last: {exc.kind}: {exc}")


def _contradicted(request: TeacherRequest, answer: TeacherAnswer, tally: _Tally,
                  started: float) -> Outcome:
    """The teacher overruled a confident critical guess: a human decides, nothing trains."""
    message = (f"the teacher answered {answer.label!r}; the student said "
               f"{request.student_label!r} at {request.student_confidence or 0.0:.2f}")
    log.warning("request %s: %s: escalated, not trained on", request.id, message)
    return Outcome("escalate", latency_ms=_elapsed_ms(started), cost=tally.cost,
                   tokens_in=tally.tokens_in, tokens_out=tally.tokens_out, calls=tally.calls,
                   error_kind="contradicted", message=message, teacher_id=answer.teacher_id)


def _fallback(request: TeacherRequest) -> Outcome:
    return Outcome("fallback", label=request.student_label or "",
                   message="teacher unavailable past the task's deadline")


def decision_reason(request: TeacherRequest) -> DecisionReason:
    return "cold_start" if request.reason == "cold_start" else (
        "critical" if request.reason == "critical" else "low_confidence")


def records_for(request: TeacherRequest, outcome: Outcome,
                task: TaskConfig) -> tuple[Decision | None, TeacherVerdict | None]:
    """The decision and the verdict an outcome produces (dead or escalated: neither)."""
    if outcome.kind == "fallback":
        confidence = min(1.0, max(0.0, request.student_confidence or 0.0))
        return Decision(id=request.id, task=task.name, label=outcome.label,
                        confidence=confidence, decided_by="fallback",
                        model_version=request.model_version, reason="teacher_unavailable",
                        latency_ms=outcome.latency_ms, cost=0.0), None
    if outcome.kind != "answer":
        return None, None
    verdict = TeacherVerdict(
        id=request.id, task=task.name, text=request.text, label=outcome.label,
        teacher_id=outcome.teacher_id or "", student_label=request.student_label,
        student_confidence=request.student_confidence, reason=request.reason,
        latency_ms=outcome.latency_ms, cost=outcome.cost, tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out, tier2_version=request.tier2_version)
    if request.reason == "audit":
        return None, verdict
    decision = Decision(id=request.id, task=task.name, label=outcome.label, confidence=1.0,
                        decided_by="teacher", teacher_id=outcome.teacher_id,
                        reason=decision_reason(request), latency_ms=outcome.latency_ms,
                        cost=outcome.cost)
    return decision, verdict
