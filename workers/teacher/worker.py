"""The teacher worker: ``<task>.teacher`` in; decisions, verdicts and dead letters out.

A plain aiokafka consumer (group ``<prefix>distillery-teacher-<task>``, no auto-commit, raw
bytes) feeds up to ``max_pending`` requests at a time to the ``Resolver``. Outputs are keyed
by the request id. A partition's offset is committed only up to its oldest request whose
outputs are not yet acknowledged by the broker (at-least-once). While the teacher is
unavailable (breaker open or budget spent) and the task has no fallback, every partition is
paused: requests wait in Kafka, nothing is dropped. Outcomes are stored by id and text
hash, so a redelivered request replays its outcome instead of paying again. Several
workers on one group (one host or several) share that memory and the budget through the
ledger topic ``<task>.teacher.ledger`` (``workers.teacher.ledger``): an outcome is
acknowledged there before the outputs are sent, every worker reads the whole ledger, and
it has caught up before it consumes and after each assignment. A critical item the teacher
refuses goes to ``<task>.escalations``; a dead letter keeps a bounded prefix of the request
with its size and sha256. Every send's future is checked: a retriable failure is re-sent, a
non-retriable one stops the worker with an error (nothing after it is committed).
Before subscribing it waits until its topics are in the cluster metadata.
SIGTERM/SIGINT: stop fetching, finish calls in flight (requests still waiting are left for
redelivery), flush, commit, exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TypeAlias

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from distillery.errors import BrokerError, SerializationError, ValidationError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import Escalation, TeacherRequest
from schemas.serde import decode, encode
from streams.decode import RawEvent, dead_letter
from streams.send import TOO_LARGE, AiokafkaSender, Output, send_until_acknowledged
from streams.topics import (
    DEADLETTER_TOPIC,
    escalations_topic,
    teacher_ledger_topic,
    wait_for_topics,
)
from workers.runtime.signals import run_until_signal
from workers.teacher.base import Teacher, TeacherCallError
from workers.teacher.ledger import LedgerReader, SpendCounter, encode_entry
from workers.teacher.metrics import TeacherMetrics
from workers.teacher.offsets import OffsetTracker
from workers.teacher.openai_client import OpenAITeacher
from workers.teacher.policy import Budget, CircuitBreaker, RetryPolicy
from workers.teacher.resolve import Abandoned, Resolver, records_for
from workers.teacher.store import (
    Outcome,
    OutcomeStore,
    entry_for,
    health_path,
    memo_key,
    store_path,
)

log = logging.getLogger(__name__)

Message: TypeAlias = ConsumerRecord[bytes, bytes]


def group_id(settings: Settings, task: TaskConfig) -> str:
    return f"{settings.topic_prefix}distillery-teacher-{task.name}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: TeacherWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.commit()
        self.worker.tracker.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.assigned = set(assigned)
        try:  # what the partitions' previous owners stored is in the cache before we consume
            await self.worker.ledger.caught_up()
        except Exception as exc:  # noqa: BLE001 - aiokafka would only log it
            log.error("teacher worker for %s: cannot read the ledger: %s", self.worker.task.name,
                      exc)
            self.worker._fail(exc)
        if not assigned:
            log.warning("teacher worker for %s assigned no partitions (more workers than "
                        "partitions, or %s not in its metadata)", self.worker.task.name,
                        self.worker.source)
        log.info("teacher worker assigned %s", sorted(f"{tp.topic}[{tp.partition}]"
                                                      for tp in assigned))


class TeacherWorker:
    def __init__(self, settings: Settings, task: TaskConfig, teacher: Teacher, *,
                 retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 budget: Budget | None = None, metrics_port: int = 0,
                 max_pending: int | None = None, commit_interval_s: float = 0.5,
                 drain_timeout_s: float | None = None, ledger_max_lag_s: float = 5.0) -> None:
        self.settings = settings
        self.task = task
        self.teacher = teacher
        self.metrics = TeacherMetrics(task.name)
        self.metrics_port = metrics_port
        self.resolver = Resolver(
            teacher, task,
            retry=retry or RetryPolicy(settings.teacher_max_retries, settings.teacher_backoff_s,
                                       give_up_tries=settings.teacher_give_up_tries,
                                       give_up_s=settings.teacher_give_up_s),
            breaker=breaker or CircuitBreaker(settings.teacher_breaker_failures,
                                              settings.teacher_breaker_reset_s,
                                              rejections=settings.teacher_breaker_rejections),
            budget=budget or Budget(settings.teacher_calls_per_minute,
                                    settings.teacher_cost_per_hour),
            metrics=self.metrics, concurrency=settings.teacher_concurrency,
            # only a teacher that reads the item's text can be talked into an answer
            contradiction_confidence=settings.teacher_contradiction_confidence
            if isinstance(teacher, OpenAITeacher) else None)
        self.store = OutcomeStore(store_path(settings, task))
        # What was spent in the last hour still counts after a restart: this host's cache now,
        # what the other workers spent since as the ledger is read (each payment once).
        self.spend = SpendCounter(self.resolver.budget)
        self.spend.restore(self.store.entries_since(time.time() - 3600))
        self.ledger = LedgerReader(settings, task, self.store, self.spend,
                                   max_lag_s=ledger_max_lag_s)
        self.ledger_topic = settings.topic(teacher_ledger_topic(task))
        self._ledger_partitions = 0
        self.tracker = OffsetTracker()
        self.max_pending = max_pending or max(16, settings.teacher_concurrency * 4)
        self.commit_interval_s = commit_interval_s
        self.drain_timeout_s = drain_timeout_s or settings.teacher_timeout_s + 5.0
        self.source = settings.topic(task.teacher_topic)
        self.assigned: set[TopicPartition] = set()
        self.pauses = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_key: dict[str, asyncio.Future[Outcome]] = {}
        self._fatal: BaseException | None = None
        self._unavailable = False
        self._health = (False, False)
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
        s = self.settings
        topics = [self.source, s.topic(self.task.results_topic), s.topic(self.task.verdicts_topic),
                  s.topic(DEADLETTER_TOPIC), s.topic(escalations_topic(self.task)),
                  self.ledger_topic]
        counts = await wait_for_topics(s, topics)
        self._ledger_partitions = counts[self.ledger_topic]
        self._producer = AIOKafkaProducer(
            linger_ms=5, request_timeout_ms=int(s.producer_request_timeout_s * 1000),
            **s.aiokafka_producer_kwargs())
        self._consumer = AIOKafkaConsumer(
            group_id=group_id(self.settings, self.task), enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=30_000, **kafka)
        self.metrics.serve(self.metrics_port)
        await self._producer.start()
        try:
            # the group's memory and spend before the first request: no call paid twice,
            # no call over the shared budget
            await self.ledger.start(self._ledger_partitions)
            self.resolver.budget.gate = self.ledger.fresh
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
        await self.ledger.stop()
        await self.teacher.aclose()
        self.store.close()
        log.info("teacher worker for %s stopped", self.task.name)

    # --- the fetch loop --------------------------------------------------------------
    async def _loop(self) -> None:
        assert self._consumer is not None
        last_commit = asyncio.get_running_loop().time()
        while not self._stop.is_set():
            failure = self.ledger.failure()
            if failure is not None:  # it cannot share memory or budget any more: stop
                raise BrokerError(f"the teacher ledger reader failed: {failure}") from failure
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
            log.info("teacher for %s %s (breaker %s, calls left %.0f, cost left %.4f, "
                     "ledger %s)%s",
                     self.task.name, "unavailable" if unavailable else "available again",
                     self.resolver.breaker.state, self.resolver.budget.calls_left,
                     self.resolver.budget.cost_left,
                     "fresh" if self.ledger.fresh() else "stale",
                     "" if self.task.policy.fallback else
                     (": stop consuming" if unavailable else ": consuming"))
        self.metrics.paused.set(1 if unavailable and not self.task.policy.fallback else 0)
        health = (self.resolver.breaker.state != "closed", not self.resolver.budget.available())
        if health != self._health:
            self._health = health
            self._write_health(*health)

    def _write_health(self, breaker_open: bool, budget_spent: bool) -> None:
        """The breaker's state and why, for ``distillery status`` on this host (half-open,
        probing, counts as open: it is not serving)."""
        health = {"breaker": "open" if breaker_open else "closed",
                  "cause": self.resolver.breaker.cause if breaker_open else "",
                  "budget_spent": budget_spent, "unavailable": breaker_open or budget_spent,
                  "at": time.time()}
        path = health_path(self.settings, self.task.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staged = path.with_suffix(".tmp")
            staged.write_text(json.dumps(health), encoding="utf-8")
            staged.replace(path)
        except OSError as exc:
            log.warning("teacher worker for %s: cannot write %s: %s", self.task.name, path, exc)

    def _spawn(self, tp: TopicPartition, message: Message) -> None:
        token = self.tracker.start(tp, message.offset)
        task = asyncio.create_task(self._handle(tp, message, token))
        self._tasks.add(task)
        self.metrics.inflight.set(len(self._tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.metrics.inflight.set(len(self._tasks))

    async def _handle(self, tp: TopicPartition, message: Message, token: int) -> None:
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
    async def _process(self, message: Message) -> None:
        raw: bytes = message.value or b""
        try:
            request = decode(raw, TeacherRequest, max_text_chars=self.settings.max_text_chars)
        # a bad record is dead-lettered; a Schema Registry outage propagates and stops the worker
        except (SerializationError, ValidationError) as exc:
            kind = ("undecodable" if isinstance(exc, SerializationError)
                    else "oversized" if "over the cap" in str(exc) else "invalid_record")
            await self._dead_letter(message, kind, str(exc))
            return
        if request.task != self.task.name:
            await self._dead_letter(message, "wrong_task",
                                    f"request for task {request.task} on {message.topic}")
            return
        request = redact_request(request, self.task)
        await self._emit(message, request, await self._outcome_for(request, message.partition))

    async def _outcome_for(self, request: TeacherRequest, partition: int = 0) -> Outcome:
        """The stored outcome, the one a duplicate in flight is getting, or a new one (stored
        here and acknowledged in the ledger before it is returned)."""
        key = memo_key(request.id, request.text)
        stored = self.store.get(key)
        if stored is not None:
            self.metrics.outcome("replayed")
            return stored
        twin = self._by_key.get(key)
        if twin is not None:
            outcome = await asyncio.shield(twin)
            self.metrics.outcome("replayed")
            return outcome
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._by_key[key] = future
        try:
            outcome = await self.resolver.resolve(request)
            await self._remember(key, outcome, partition)
        except BaseException as exc:
            future.set_exception(Abandoned() if isinstance(exc, Abandoned | asyncio.CancelledError)
                                 else exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._by_key.pop(key, None)
        self.metrics.outcome(outcome.kind)
        future.set_result(outcome)
        return outcome

    async def _remember(self, key: str, outcome: Outcome, partition: int) -> None:
        """Store an outcome in the cache and the ledger (acknowledged) before any output.

        A dead letter's outcome is not replayed (a redelivery asks again) but its calls are
        recorded as spend. Outside ``run`` (no producer: unit tests) only the cache is written.
        """
        memo = outcome.kind != "dead" or outcome.error_kind == "invalid_answer"
        if not memo and outcome.calls == 0:
            return
        entry = entry_for(key, outcome, memo)
        self.store.write([entry])
        self.spend.own(entry)  # counted by the budget as it was spent
        if self._producer is None:
            return
        ledger_partition = partition % max(1, self._ledger_partitions)
        await self._send_all([(self.ledger_topic, entry.key.encode("utf-8"),
                               encode_entry(entry))], partition=ledger_partition, raw_topic=True)

    async def _emit(self, message: Message, request: TeacherRequest, outcome: Outcome) -> None:
        if outcome.kind == "dead":
            await self._dead_letter(message, outcome.error_kind, outcome.message)
            return
        key = request.id.encode("utf-8")
        if outcome.kind == "escalate":
            log.warning("escalating item %s for human review: %s: %s", request.id,
                        outcome.error_kind, outcome.message)
            self.metrics.outcome("escalated")
            record = Escalation(
                id=request.id, task=self.task.name, text=request.text,
                metadata=request.metadata, student_label=request.student_label,
                student_confidence=request.student_confidence, request_reason=request.reason,
                kind=outcome.error_kind, message=outcome.message[:2000],
                teacher_id=self.teacher.teacher_id)
            await self._send_all([(escalations_topic(self.task), key, encode(record))],
                                 origin=message)
            return
        decision, verdict = records_for(request, outcome, self.task)
        sends: list[tuple[str, bytes | None, bytes]] = []
        if decision is not None:
            sends.append((self.task.results_topic, key,
                          encode(decision, self.task.output_format)))
        if verdict is not None:
            sends.append((self.task.verdicts_topic, key, encode(verdict)))
        await self._send_all(sends, origin=message)

    async def _dead_letter(self, message: Message, kind: str, reason: str) -> None:
        log.warning("dead letter from %s[%s]@%s: %s: %s", message.topic, message.partition,
                    message.offset, kind, reason)
        self.metrics.dead_letters.labels(self.task.name, kind).inc()
        raw = RawEvent.of_record(message)
        record = dead_letter(self.task.name, raw, kind, reason,
                             self.settings.dead_letter_value_bytes)
        await self._send_all([(DEADLETTER_TOPIC, message.key, encode(record))], origin=message)

    async def _send_all(self, outputs: list[tuple[str, bytes | None, bytes]], *,
                        partition: int | None = None, raw_topic: bool = False,
                        origin: Message | None = None) -> None:
        """Send and wait for the broker's acknowledgement of each output (to ``partition``
        if given; ``raw_topic``: the topic names are full names, prefix included).

        ``streams.send``: a retriable failure is re-sent with backoff; an output answering
        ``origin`` that the broker refuses as too large becomes a dead letter; anything else
        raises ``FatalSendError`` (the worker stops and the request's offset is not
        committed).
        """
        assert self._producer is not None
        raw = None if origin is None else RawEvent.of_record(origin)
        sends = [Output(topic if raw_topic else self.settings.topic(topic), key, value, raw,
                        self.task.name, event_time=topic == self.task.verdicts_topic)
                 for topic, key, value in outputs]
        too_large = await send_until_acknowledged(
            AiokafkaSender(self._producer), sends, partition=partition,
            deadletter_topic=None if origin is None else self.settings.topic(DEADLETTER_TOPIC),
            keep_bytes=self.settings.dead_letter_value_bytes)
        if too_large:
            self.metrics.dead_letters.labels(self.task.name, TOO_LARGE).inc(too_large)


def redact_request(request: TeacherRequest, task: TaskConfig) -> TeacherRequest:
    """The request with its task's redaction applied again before it reaches the teacher.

    The classify worker has redacted it already (``streams.decode``); a request put on the
    teacher topic by another producer has not. Redacting a redacted text changes nothing.
    """
    redactor = task.redactor
    if redactor is None:
        return request
    text = redactor.text(request.text)
    metadata = {k: redactor.text(v) for k, v in request.metadata.items()}
    if text == request.text and metadata == request.metadata:
        return request
    return request.model_copy(update={"text": text, "metadata": metadata})


def run_worker(worker: TeacherWorker) -> None:
    """Run until SIGTERM/SIGINT (then drain and commit) or a fatal teacher error."""
    run_until_signal(worker)
