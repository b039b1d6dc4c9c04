"""The teacher worker: ``<task>.teacher`` in; decisions, verdicts and dead letters out.

A plain aiokafka consumer (group ``<prefix>distillery-teacher-<task>``, no auto-commit, raw
bytes) feeds up to ``max_pending`` requests at a time to the ``Resolver``. Outputs are keyed
by the request id. A partition's offset is committed only up to its oldest request whose
outputs are not yet acknowledged by the broker (at-least-once). While the teacher is
unavailable (breaker open or budget spent) and the task has no fallback, every partition is
paused: requests wait in Kafka, nothing is dropped. Outcomes are stored by id, so a
redelivered request replays its outcome instead of paying again.
SIGTERM/SIGINT: stop fetching, finish calls in flight (requests still waiting are left for
redelivery), flush, commit, exit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from distillery.errors import DistilleryError, SerializationError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import DeadLetter, TeacherRequest
from schemas.serde import decode, encode
from streams.topics import DEADLETTER_TOPIC
from workers.runtime.signals import run_until_signal
from workers.teacher.base import Teacher, TeacherCallError
from workers.teacher.metrics import TeacherMetrics
from workers.teacher.offsets import OffsetTracker
from workers.teacher.policy import Budget, CircuitBreaker, RetryPolicy
from workers.teacher.resolve import Abandoned, Resolver, records_for
from workers.teacher.store import Outcome, OutcomeStore, store_path

log = logging.getLogger(__name__)


def group_id(settings: Settings, task: TaskConfig) -> str:
    return f"{settings.topic_prefix}distillery-teacher-{task.name}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: TeacherWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.commit()
        self.worker.tracker.forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("teacher worker assigned %s", sorted(f"{tp.topic}[{tp.partition}]"
                                                      for tp in assigned))


class TeacherWorker:
    def __init__(self, settings: Settings, task: TaskConfig, teacher: Teacher, *,
                 retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 budget: Budget | None = None, metrics_port: int = 0,
                 max_pending: int | None = None, commit_interval_s: float = 0.5,
                 drain_timeout_s: float | None = None) -> None:
        self.settings = settings
        self.task = task
        self.teacher = teacher
        self.metrics = TeacherMetrics(task.name)
        self.metrics_port = metrics_port
        self.resolver = Resolver(
            teacher, task,
            retry=retry or RetryPolicy(settings.teacher_max_retries, settings.teacher_backoff_s),
            breaker=breaker or CircuitBreaker(settings.teacher_breaker_failures,
                                              settings.teacher_breaker_reset_s),
            budget=budget or Budget(settings.teacher_calls_per_minute,
                                    settings.teacher_cost_per_hour),
            metrics=self.metrics, concurrency=settings.teacher_concurrency)
        self.store = OutcomeStore(store_path(settings, task))
        self.tracker = OffsetTracker()
        self.max_pending = max_pending or max(16, settings.teacher_concurrency * 4)
        self.commit_interval_s = commit_interval_s
        self.drain_timeout_s = drain_timeout_s or settings.teacher_timeout_s + 5.0
        self.source = settings.topic(task.teacher_topic)
        self.pauses = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_id: dict[str, asyncio.Future[Outcome]] = {}
        self._fatal: BaseException | None = None
        self._unavailable = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    # --- lifecycle -------------------------------------------------------------------
    def stop(self) -> None:
        """Stop fetching; in-flight calls finish, waiting requests are left for redelivery."""
        if not self._stop.is_set():
            log.info("teacher worker for %s stopping", self.task.name)
        self._stop.set()
        self.resolver.stopping.set()

    async def run(self) -> None:
        kafka = self.settings.aiokafka_kwargs()
        self._producer = AIOKafkaProducer(acks="all", linger_ms=5, **kafka)
        self._consumer = AIOKafkaConsumer(
            group_id=group_id(self.settings, self.task), enable_auto_commit=False,
            auto_offset_reset="earliest", **kafka)
        self.metrics.serve(self.metrics_port)
        await self._producer.start()
        try:
            await self._consumer.start()
            self._consumer.subscribe([self.source], listener=_Rebalance(self))
            log.info("teacher worker for %s: %s -> %s, teacher %s", self.task.name, self.source,
                     self.settings.topic(self.task.results_topic), self.teacher.teacher_id)
            await self._loop()
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    async def _shutdown(self) -> None:
        self.stop()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.drain_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._consumer is not None:
            await self.commit()
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.teacher.aclose()
        self.store.close()
        log.info("teacher worker for %s stopped", self.task.name)

    # --- the fetch loop --------------------------------------------------------------
    async def _loop(self) -> None:
        assert self._consumer is not None
        last_commit = asyncio.get_running_loop().time()
        while not self._stop.is_set():
            if len(self._tasks) >= self.max_pending:  # full: wait for a slot, not a fetch
                await asyncio.wait(self._tasks, timeout=0.1,
                                   return_when=asyncio.FIRST_COMPLETED)
            self._set_paused()
            free = max(1, self.max_pending - len(self._tasks))
            batch = await self._consumer.getmany(timeout_ms=100, max_records=free)
            for tp, messages in batch.items():
                for message in messages:
                    self._spawn(tp, message)
            now = asyncio.get_running_loop().time()
            if now - last_commit >= self.commit_interval_s:
                await self.commit()
                last_commit = now

    def _set_paused(self) -> None:
        """Pause every partition while the teacher is unavailable (without fallback) or
        while ``max_pending`` requests are in hand; resume when neither holds."""
        assert self._consumer is not None
        unavailable = not self.resolver.available()
        stop_fetching = (unavailable and not self.task.policy.fallback
                         or len(self._tasks) >= self.max_pending)
        assignment = self._consumer.assignment()
        if stop_fetching:
            self._consumer.pause(*assignment)
        else:
            self._consumer.resume(*assignment)
        if unavailable != self._unavailable:
            self._unavailable = unavailable
            self.pauses += int(unavailable)
            log.info("teacher for %s %s (breaker %s, calls left %.0f, cost left %.4f)%s",
                     self.task.name, "unavailable" if unavailable else "available again",
                     self.resolver.breaker.state, self.resolver.budget.calls_left,
                     self.resolver.budget.cost_left,
                     "" if self.task.policy.fallback else
                     (": stop consuming" if unavailable else ": consuming"))
        self.metrics.paused.set(1 if unavailable and not self.task.policy.fallback else 0)

    def _spawn(self, tp: Any, message: Any) -> None:
        token = self.tracker.start(tp, message.offset)
        task = asyncio.create_task(self._handle(tp, message, token))
        self._tasks.add(task)
        self.metrics.inflight.set(len(self._tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.metrics.inflight.set(len(self._tasks))

    async def _handle(self, tp: Any, message: Any, token: int) -> None:
        try:
            await self._process(message)
        except Abandoned:
            return
        except asyncio.CancelledError:
            return
        except TeacherCallError as exc:
            log.error("teacher worker for %s: %s; stopping", self.task.name, exc)
            self._fail(exc)
            return
        except Exception as exc:  # a broken producer or store: crash, be redelivered
            log.exception("teacher worker for %s: cannot process %s[%s]@%s", self.task.name,
                          message.topic, message.partition, message.offset)
            self._fail(exc)
            return
        self.tracker.done(tp, message.offset, token)

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.stop()

    async def commit(self) -> None:
        if self._consumer is None:
            return
        offsets = self.tracker.committable()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("teacher worker for %s: commit failed (%s); will redo", self.task.name,
                        exc)
            return
        self.tracker.committed(offsets)

    # --- one request -----------------------------------------------------------------
    async def _process(self, message: Any) -> None:
        raw: bytes = message.value or b""
        try:
            request = decode(raw, TeacherRequest, max_text_chars=self.settings.max_text_chars)
        except DistilleryError as exc:
            kind = "undecodable" if isinstance(exc, SerializationError) else "invalid_record"
            await self._dead_letter(message, kind, str(exc))
            return
        if request.task != self.task.name:
            await self._dead_letter(message, "wrong_task",
                                    f"request for task {request.task} on {message.topic}")
            return
        await self._emit(message, request, await self._outcome_for(request))

    async def _outcome_for(self, request: TeacherRequest) -> Outcome:
        """The stored outcome, the one a duplicate in flight is getting, or a new one."""
        stored = self.store.get(request.id)
        if stored is not None:
            self.metrics.outcome("replayed")
            return stored
        twin = self._by_id.get(request.id)
        if twin is not None:
            outcome = await asyncio.shield(twin)
            self.metrics.outcome("replayed")
            return outcome
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._by_id[request.id] = future
        try:
            outcome = await self.resolver.resolve(request)
        except BaseException as exc:
            future.set_exception(Abandoned() if isinstance(exc, Abandoned | asyncio.CancelledError)
                                 else exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._by_id.pop(request.id, None)
        if outcome.kind != "dead" or outcome.error_kind == "invalid_answer":
            self.store.put(request.id, outcome)
        self.metrics.outcome(outcome.kind)
        future.set_result(outcome)
        return outcome

    async def _emit(self, message: Any, request: TeacherRequest, outcome: Outcome) -> None:
        if outcome.kind == "dead":
            await self._dead_letter(message, outcome.error_kind, outcome.message)
            return
        decision, verdict = records_for(request, outcome, self.task)
        key = request.id.encode("utf-8")
        sends = []
        if decision is not None:
            sends.append(await self._send(self.task.results_topic, key,
                                          encode(decision, self.task.output_format)))
        if verdict is not None:
            sends.append(await self._send(self.task.verdicts_topic, key, encode(verdict)))
        await asyncio.gather(*sends)

    async def _dead_letter(self, message: Any, kind: str, reason: str) -> None:
        log.warning("dead letter from %s[%s]@%s: %s: %s", message.topic, message.partition,
                    message.offset, kind, reason)
        self.metrics.dead_letters.labels(self.task.name, kind).inc()
        record = DeadLetter(task=self.task.name, source_topic=message.topic,
                            partition=message.partition, offset=message.offset, key=message.key,
                            value=message.value or b"", error_kind=kind, message=reason)
        await (await self._send(DEADLETTER_TOPIC, message.key, encode(record)))

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        assert self._producer is not None
        future: asyncio.Future[Any] = await self._producer.send(
            self.settings.topic(topic), value=value, key=key)
        return future


def run_worker(worker: TeacherWorker) -> None:
    """Run until SIGTERM/SIGINT (then drain and commit) or a fatal teacher error."""
    run_until_signal(worker)
