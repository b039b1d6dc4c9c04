"""The refine worker: tier 2 of the cascade, between the n-gram student and the teacher.

``<task>.refine`` carries tier 1's ``low_confidence`` teacher requests (the classify worker
sends them there when the task's ``tiers`` has ``embed``). A plain aiokafka consumer (group
``<prefix>distillery-refine-<task>``, no auto-commit) takes micro-batches (up to
``DISTILLERY_BATCH_SIZE`` records, waiting at most ``BATCH_WITHIN_S`` for more) and hands
each to ``refine_batch`` (plain code): decode, one ``predict_many`` of the serving tier-2
version (an ``embed`` stage, ``models.stage``), then ``models.policy.decide``
under that version's policy —

* ``confident`` → a decision on the results topic, ``decided_by`` ``student``,
  ``model_version`` ``embed-vNNNN``; a deterministic ``audit_rate`` share of them (from the
  id) also goes to the teacher with reason ``audit`` (a verdict, not a second decision);
* otherwise → the request goes on to ``<task>.teacher`` with tier 2's label, confidence and
  version beside tier 1's (``tier2_*`` fields); reason ``critical`` if tier 2's floors say
  so, else tier 1's reason.

Nothing it can still route is dead-lettered: with no tier-2 version yet, or when tier 2
fails at run time (the encoder, the head), the batch goes on to the teacher as it came. Only
bytes that are not a teacher request go to ``deadletter``. A batch's offsets are committed
after the broker acknowledged all its outputs (at-least-once; a non-retriable send error
ends the process with ``FATAL_EXIT`` and nothing committed). Hot swap: the tier-2 head
follows the ``models`` topic under the key ``<task>/embed`` with the classify worker's
follower (no group, from the start), swapped between batches. Before subscribing the worker
waits until its topics are in the cluster metadata (``streams.topics.wait_for_topics``).

Metrics (``streams.metrics.RefineMetrics``, ``distillery_refine_*``) are served on
``/metrics`` at ``metrics_port`` (the CLI's ``--metrics-port``, default
``DISTILLERY_METRICS_PORT``; 0: off).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distillery.errors import SerializationError, ValidationError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import DEFAULT_MAX_TEXT_CHARS, Decision, ModelAnnouncement, TeacherRequest
from schemas.registry import SchemaRegistryError
from schemas.serde import decode, encode
from streams.decode import RawEvent, dead_letter, encode_output
from streams.hotswap import AnnouncementFollower, Loader, ModelHolder, announced_directory
from streams.metrics import RefineMetrics
from streams.routing import Policy, StudentLike, audit_selected, route_stage
from streams.send import (
    FATAL_EXIT,
    AiokafkaSender,
    FatalSendError,
    Output,
    send_until_acknowledged,
)
from streams.topics import DEADLETTER_TOPIC, MODELS_TOPIC, wait_for_topics

log = logging.getLogger(__name__)

LAG_EVERY_S = 5.0  # how often the consumer lag gauge is refreshed


def group_id(settings: Settings, task: TaskConfig) -> str:
    return f"{settings.topic_prefix}distillery-refine-{task.name}"


@dataclass
class RefineRuntime:
    task: TaskConfig
    holder: ModelHolder
    policy: Policy
    topics: dict[str, str] = field(default_factory=dict)  # role -> full topic name
    metrics: RefineMetrics = None  # type: ignore[assignment]  # one per task if not given
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = RefineMetrics(self.task.name)


def route_requests(task: TaskConfig, stage: StudentLike | None,
                   requests: list[TeacherRequest], policy: Policy
                   ) -> list[tuple[Decision | None, TeacherRequest | None]]:
    """(decision, request to the teacher) per request, through the next stage
    (``streams.routing.route_stage``, the first stage's routing too)."""
    if stage is None or not requests:
        return [(None, r) for r in requests]
    now = datetime.now(UTC)
    outcomes = route_stage(task, stage, [r.text for r in requests], policy, has_next=False)
    out: list[tuple[Decision | None, TeacherRequest | None]] = []
    for request, o in zip(requests, outcomes, strict=True):
        scored = request.model_copy(update={"tier2_label": o.label,
                                            "tier2_confidence": o.confidence,
                                            "tier2_version": stage.version})
        if o.reason != "confident":
            update: dict[str, Any] = {"requested_at": now}
            if o.reason == "critical":
                update["reason"] = "critical"
            out.append((None, scored.model_copy(update=update)))
            continue
        waited = max(0.0, (now - request.requested_at).total_seconds() * 1000.0)
        decision = Decision(id=request.id, task=task.name, label=o.label,
                            confidence=o.confidence, decided_by="student",
                            model_version=stage.version, reason="confident",
                            latency_ms=waited, cost=0.0, decided_at=now)
        audit = None
        if audit_selected(request.id, policy.audit_rate):
            audit = scored.model_copy(update={"reason": "audit", "requested_at": now})
        out.append((decision, audit))
    return out


def refine_batch(rt: RefineRuntime, raws: list[RawEvent], keep_bytes: int = 4096) -> list[Output]:
    """Decode, score with tier 2 and route one batch. Never raises for bad input, and a
    tier-2 failure forwards the batch to the teacher unchanged."""
    m = rt.metrics
    m.items_in.inc(len(raws))
    m.batch_size.observe(len(raws))
    out: list[Output] = []
    requests: list[TeacherRequest] = []
    origins: list[RawEvent] = []
    for raw in raws:
        try:
            requests.append(decode(raw.value or b"", TeacherRequest,
                                   max_text_chars=rt.max_text_chars))
            origins.append(raw)
        # not a teacher request (or over a bound): dead letter. A Schema Registry outage is
        # not a bad record: it propagates, and the worker stops without committing.
        except (SerializationError, ValidationError) as exc:
            kind = "oversized" if "over the cap" in str(exc) else "undecodable"
            m.dead.labels(rt.task.name, kind).inc()
            out.append(Output(rt.topics["deadletter"], raw.key, encode(dead_letter(
                rt.task.name, raw, kind, str(exc), keep_bytes)), raw, rt.task.name))
    started = time.perf_counter()
    try:
        routed = route_requests(rt.task, rt.holder.current, requests, rt.policy)
        if rt.holder.current is None and requests:
            m.unscored.labels(rt.task.name, "no_model").inc(len(requests))
    except Exception:  # the encoder or the head failed: the teacher decides the batch
        log.exception("task %s: tier 2 failed on a batch of %d; forwarding it to the teacher",
                      rt.task.name, len(requests))
        m.unscored.labels(rt.task.name, "tier2_failed").inc(len(requests))
        routed = [(None, r) for r in requests]
    m.inference.observe(time.perf_counter() - started)
    for (decision, request), origin in zip(routed, origins, strict=True):
        key = (decision or request).id.encode("utf-8")  # type: ignore[union-attr]
        if decision is not None:
            m.decided.inc()
            out.append(Output(rt.topics["results"], key, encode_output(rt.task, decision),
                              origin, rt.task.name))
        if request is not None:
            m.forwarded.labels(rt.task.name, request.reason).inc()
            out.append(Output(rt.topics["teacher"], key, encode(request), origin, rt.task.name,
                              event_time=True))
    return out


def stage_loader(settings: Settings, encoder: Callable[[], Any]) -> Loader:
    def load(announcement: ModelAnnouncement) -> StudentLike:
        from models.stage import Stage

        return Stage.load(announced_directory(settings, announcement),
                          expected_sha256=announcement.sha256,
                          threads=settings.student_threads, encoder=encoder)

    return load


class RefineWorker:
    def __init__(self, settings: Settings, task: TaskConfig, loader: Loader | None = None,
                 on_fatal: Callable[[int], None] | None = None, metrics_port: int = 0) -> None:
        from models.stage import encoder_loader, registry_key, stage_version

        self.settings = settings
        self.task = task
        self.on_fatal = on_fatal
        loader = loader or stage_loader(settings, encoder_loader(
            settings.cache_dir, settings.embed_threads, settings.embed_precision))
        self.key = registry_key(task.name, "embed")
        self.metrics_port = metrics_port
        metrics = RefineMetrics(task.name)
        holder = ModelHolder(self.key, loader,
                             lambda key, version: metrics.serving(stage_version("embed", version)),
                             lambda key: metrics.swaps_rejected.inc())
        policy = Policy.for_task(settings, task)
        self.rt = RefineRuntime(task, holder, policy, {
            "source": settings.topic(task.refine_topic),
            "results": settings.topic(task.results_topic),
            "teacher": settings.topic(task.teacher_topic),
            "deadletter": settings.topic(DEADLETTER_TOPIC),
        }, metrics, settings.max_text_chars)
        self.follower = AnnouncementFollower(settings, {self.key: holder})
        self._stop = asyncio.Event()
        self.batches = 0

    def stop(self) -> None:
        if not self._stop.is_set():
            log.info("refine worker for %s stopping", self.task.name)
        self._stop.set()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        s = self.settings
        await wait_for_topics(s, sorted({*self.rt.topics.values(), s.topic(MODELS_TOPIC)}))
        kafka = s.aiokafka_kwargs()
        producer = AIOKafkaProducer(linger_ms=5,
                                    request_timeout_ms=int(s.producer_request_timeout_s * 1000),
                                    **s.aiokafka_producer_kwargs())
        consumer = AIOKafkaConsumer(group_id=group_id(s, self.task), enable_auto_commit=False,
                                    auto_offset_reset="earliest", metadata_max_age_ms=30_000,
                                    **kafka)
        self.rt.metrics.serve(self.metrics_port)
        follow = asyncio.create_task(self._follow())
        await producer.start()
        try:
            await consumer.start()
            consumer.subscribe([self.rt.topics["source"]])
            await self._wait_ready()
            log.info("refine worker for %s: %s -> %s / %s, tier 2 %s", self.task.name,
                     self.rt.topics["source"], self.rt.topics["results"],
                     self.rt.topics["teacher"],
                     self.rt.holder.current.version if self.rt.holder.current else "none yet")
            await self._loop(consumer, AiokafkaSender(producer))
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            await consumer.stop()
            await producer.stop()
            self.rt.metrics.close()
            log.info("refine worker for %s stopped: %s", self.task.name,
                     self.rt.metrics.summary())

    async def _wait_ready(self) -> None:
        ready = asyncio.create_task(self.follower.ready.wait())
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
        for t in (ready, stop):
            t.cancel()

    async def _follow(self) -> None:
        await self.follower.run_forever("tier-2 model follower")

    async def _loop(self, consumer: Any, producer: AiokafkaSender) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError

        s = self.settings
        lag_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() - lag_at >= LAG_EVERY_S:
                lag_at = time.monotonic()
                await self._measure_lag(consumer)
            batch = await consumer.getmany(timeout_ms=int(s.batch_within_s * 1000) or 1,
                                           max_records=s.batch_size)
            messages = [m for part in batch.values() for m in part]
            if not messages:
                continue
            raws = [RawEvent.of_record(m) for m in messages]
            started = time.perf_counter()
            try:
                outputs = await asyncio.to_thread(refine_batch, self.rt, raws,
                                                  s.dead_letter_value_bytes)
                too_large = await send_until_acknowledged(
                    producer, outputs, deadletter_topic=self.rt.topics["deadletter"],
                    keep_bytes=s.dead_letter_value_bytes)
                if too_large:
                    self.rt.metrics.dead.labels(self.task.name, "output_too_large").inc(too_large)
            except (FatalSendError, SchemaRegistryError) as exc:
                log.critical("refine worker for %s: %s; exiting with code %d, the batch of "
                             "%d not committed", self.task.name, exc, FATAL_EXIT, len(raws))
                if self.on_fatal is not None:
                    self.on_fatal(FATAL_EXIT)
                raise
            offsets: dict[Any, int] = {}
            for m in messages:
                tp = TopicPartition(m.topic, m.partition)
                offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
            try:
                await consumer.commit(offsets)
            except CommitFailedError as exc:  # revoked meanwhile: its new owner redoes it
                log.warning("refine worker for %s: commit failed (%s); the batch will be "
                            "redelivered", self.task.name, exc)
            self.batches += 1
            took = time.perf_counter() - started
            self.rt.metrics.batch_seconds.observe(took)
            log.debug("refine %s: batch of %d in %.3f s", self.task.name, len(raws), took)

    async def _measure_lag(self, consumer: Any) -> None:
        for tp in consumer.assignment():
            try:
                position = await consumer.position(tp)
                high = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not assigned any more, or not fetched yet
                continue
            if high is None:
                continue
            self.rt.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))


def run_refine(settings: Settings, task: TaskConfig, metrics_port: int = 0) -> None:
    """Run the refine worker until SIGTERM/SIGINT (it finishes its batch, commits, exits)."""
    from workers.runtime.signals import run_until_signal

    run_until_signal(RefineWorker(settings, task, metrics_port=metrics_port))


__all__ = ["RefineRuntime", "RefineWorker", "refine_batch", "route_requests", "run_refine"]
