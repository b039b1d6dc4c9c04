"""The classify worker: a faust app with one thin agent per task.

The classify app's consumer delivers the messages of an input topic that one fetch returned
(at most ``batch_size``) as a single ``MessageBatch`` event (``streams/drain.py``), so
faust's per-message stream machinery runs once a fetch; each agent takes what up to
``FETCHES_PER_BATCH`` fetches brought as one micro-batch. It hands the micro-batch to
``process_batch`` (plain code: decode, one ``predict_many``, route) and sends what it
returns, keyed by event id. Nothing raises out of an agent body for bad input. A batch's
messages are acked only when the broker has acknowledged every one of its outputs: each
send's future is checked (``streams.send``): a retriable failure re-sends what failed, an
output the broker refuses as too large becomes a dead letter, and any other non-retriable
one (a missing ACL) ends the process at once with exit code ``FATAL_EXIT`` and nothing
acked, for the supervisor to restart it. A ``MessageBatch`` is born acked, so
faust's own ack of the event (which it runs in a ``finally``, even when the body is left by
a cancellation at SIGTERM) does nothing; only ``ack_batch`` acks its messages. Before faust
subscribes, the worker waits until its topics are in the cluster's metadata.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.registry import SchemaRegistryError
from schemas.serde import encode
from streams.decode import Item, RawEvent, decode_event, encode_output
from streams.drain import DrainApp, ack_batch
from streams.hotswap import AnnouncementFollower, Loader, ModelHolder, default_loader
from streams.metrics import ClassifyMetrics
from streams.routing import Policy, route_batch
from streams.send import FATAL_EXIT, FatalSendError, Output, send_until_acknowledged
from streams.topics import DEADLETTER_TOPIC, MODELS_TOPIC, wait_for_topics_sync

log = logging.getLogger(__name__)

# A fetch brings at most batch_size events; an agent's batch is what up to this many fetches
# brought (at most 16 × batch_size events at a backlog). Fetches at a trickle are small (one
# or two events): taking many at once keeps the agent ahead of them, since each batch waits a
# broker round trip for its outputs' acks.
FETCHES_PER_BATCH = 16
# ... waiting at most this long for more: at a trickle fetches come every millisecond or
# two, so this adds little latency (`distillery bench stream` measures it)
TAKE_WITHIN_S = 0.002


def _exit_now(code: int) -> None:  # pragma: no cover - ends the process
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class TaskRuntime:
    task: TaskConfig
    holder: ModelHolder
    policy: Policy
    max_text_chars: int
    metrics: ClassifyMetrics
    topics: dict[str, str] = field(default_factory=dict)  # role -> full topic name


def process_batch(rt: TaskRuntime, raws: list[RawEvent],
                  keep_bytes: int = 4096) -> list[Output]:
    """Decode, predict and route one batch. Never raises for bad input."""
    name = rt.task.name
    rt.metrics.events_in.labels(task=name).inc(len(raws))
    rt.metrics.batch_size.labels(task=name).observe(len(raws))
    items: list[Item] = []
    out: list[Output] = []
    redacted = Counter[str]()
    for raw in raws:
        decoded = decode_event(rt.task, raw, rt.max_text_chars, keep_bytes)
        if isinstance(decoded, Item):
            items.append(decoded)
            if decoded.redactions:
                redacted.update(decoded.redactions)
        else:
            rt.metrics.dead.labels(task=name, reason=decoded.error_kind).inc()
            out.append(Output(rt.topics["deadletter"], raw.key, encode(decoded), raw, name))
    started = time.perf_counter()
    try:
        routed = route_batch(rt.task, rt.holder.current, items, rt.policy)
    except Exception:  # the student failed at run time: the teacher decides the batch
        log.exception("task %s: student inference failed; deferring the batch", name)
        routed = route_batch(rt.task, None, items, rt.policy)
    rt.metrics.inference.labels(task=name).observe(time.perf_counter() - started)
    decided, deferred = 0, Counter[str]()
    for r in routed:
        key = r.item.record.id.encode("utf-8")
        if r.decision is not None:
            decided += 1
            out.append(Output(rt.topics["results"], key, encode_output(rt.task, r.decision),
                              r.item.raw, name))
        if r.request is not None:
            deferred[r.request.reason] += 1
            out.append(Output(rt.topics[r.destination], key, encode(r.request), r.item.raw, name,
                              event_time=True))
    # counted once a batch: a labelled counter's lookup per event costs more than the event
    if decided:
        rt.metrics.decided.labels(task=name).inc(decided)
    for reason, count in deferred.items():
        rt.metrics.deferred.labels(task=name, reason=reason).inc(count)
    for kind, count in redacted.items():
        rt.metrics.redactions.labels(task=name, kind=kind).inc(count)
    return out


def raw_event(message: Any) -> RawEvent:
    """A faust ``ConsumerMessage`` as ``process_batch`` takes it."""
    timestamp = getattr(message, "timestamp", None)
    return RawEvent(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=float(timestamp) * 1000.0 if timestamp else None,
    )


class ClassifyApp:
    """Builds the faust app for some tasks and owns what its agents share."""

    def __init__(
        self, settings: Settings, tasks: list[TaskConfig], loader: Loader | None = None,
        on_fatal: Callable[[int], None] = _exit_now,
    ) -> None:
        self.settings = settings
        self.on_fatal = on_fatal
        self.metrics = ClassifyMetrics()
        self.app = self._make_faust_app(tasks)
        loader = loader or default_loader(settings)
        self.runtimes: dict[str, TaskRuntime] = {}
        for task in tasks:
            holder = ModelHolder(task.name, loader, self.metrics.serving,
                                 lambda name: self.metrics.swaps_rejected.labels(task=name).inc())
            policy = Policy.for_task(settings, task)
            rt = TaskRuntime(task, holder, policy, settings.max_text_chars, self.metrics)
            rt.topics = {
                "input": settings.topic(task.input_topic),
                "results": settings.topic(task.results_topic),
                "teacher": settings.topic(task.teacher_topic),
                "refine": settings.topic(task.refine_topic),  # used when tiers has "embed"
                "deadletter": settings.topic(DEADLETTER_TOPIC),
            }
            self.runtimes[task.name] = rt
            self._add_agent(rt)
        self.follower = AnnouncementFollower(
            settings, {name: rt.holder for name, rt in self.runtimes.items()}
        )
        self._add_services()

    def _make_faust_app(self, tasks: list[TaskConfig]) -> faust.App:
        s = self.settings
        (s.state_dir / "faust").mkdir(parents=True, exist_ok=True)
        inputs = frozenset(s.topic(task.input_topic) for task in tasks)
        app = DrainApp(  # faust.App with a cheaper fetch loop (streams/drain.py)
            f"{s.topic_prefix}distillery-classify",
            batch_topics=inputs,  # each agent gets a fetch at a time
            broker_max_poll_records=s.batch_size,
            broker=[f"kafka://{host}" for host in s.kafka_bootstrap.split(",")],
            broker_credentials=s.faust_credentials(),
            value_serializer="raw",
            key_serializer="raw",
            topic_partitions=s.topic_partitions,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            web_port=s.web_port,
            web_host=s.web_host,
            datadir=str(s.state_dir / "faust"),
            broker_session_timeout=30.0,
            broker_heartbeat_interval=3.0,
            producer_acks=-1,
            producer_linger=0.002,
            producer_request_timeout=s.producer_request_timeout_s,
            stream_wait_empty=False,
            # Commit often: at-least-once means a crash re-processes what was not committed.
            broker_commit_every=max(100, s.batch_size * 4),
            broker_commit_interval=1.0,
        )
        return app

    def _add_agent(self, rt: TaskRuntime) -> None:
        app = self.app
        source = app.topic(rt.topics["input"], value_serializer="raw", key_serializer="raw")
        s = self.settings

        async def classify(stream: Any) -> None:
            await self.follower.ready.wait()
            # One event per fetch: its message is a MessageBatch of input messages
            # (streams/drain.py). The agent takes what up to FETCHES_PER_BATCH fetches
            # brought, waiting at most TAKE_WITHIN_S for more, so that the fetches arriving
            # while it waits for the broker's acks are processed together. Messages
            # are acked here, and only here, once every output is acknowledged; a batch left
            # by an error or a cancellation (SIGTERM mid-send) is redelivered.
            async for events in stream.take_events(FETCHES_PER_BATCH, within=TAKE_WITHIN_S):
                batches = [event.message for event in events]
                messages = [m for batch in batches for m in batch.messages]
                try:
                    outputs = process_batch(rt, [raw_event(m) for m in messages],
                                            s.dead_letter_value_bytes)
                    too_large = await send_until_acknowledged(
                        app.producer, outputs, deadletter_topic=rt.topics["deadletter"],
                        keep_bytes=s.dead_letter_value_bytes)
                    if too_large:
                        rt.metrics.dead.labels(task=rt.task.name,
                                               reason="output_too_large").inc(too_large)
                except (FatalSendError, SchemaRegistryError) as exc:
                    log.critical("task %s: %s; exiting with code %d, the batch of %d events "
                                 "not acked", rt.task.name, exc, FATAL_EXIT, len(messages))
                    self.on_fatal(FATAL_EXIT)
                    raise
                for batch in batches:
                    ack_batch(app.consumer, batch)

        classify.__name__ = f"classify_{rt.task.name}"
        classify.__qualname__ = classify.__name__
        app.agent(source, name=f"classify-{rt.task.name}", concurrency=1)(classify)

    def _add_services(self) -> None:
        app = self.app

        @app.task
        async def follow_models() -> None:
            await self.follower.run_forever()

        @app.timer(interval=5.0)
        async def measure_lag() -> None:
            consumer = app.consumer
            for tp in consumer.assignment():
                try:
                    position = await consumer.position(tp)
                    lag = max(0, consumer.highwater(tp) - (position or 0))
                except Exception:  # not assigned any more, or not fetched yet
                    continue
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            return web.bytes(self.metrics.render(), content_type="text/plain; version=0.0.4")


def run_worker(settings: Settings, tasks: list[TaskConfig], loglevel: str = "INFO") -> None:
    """Run the classify worker until SIGTERM/SIGINT (faust drains, flushes and commits).

    Waits first until its input, output and ``models`` topics are in the cluster metadata.
    """
    topics = {settings.topic(MODELS_TOPIC), settings.topic(DEADLETTER_TOPIC)}
    for task in tasks:
        topics |= {settings.topic(task.input_topic), settings.topic(task.results_topic),
                   settings.topic(task.teacher_topic)}
    wait_for_topics_sync(settings, sorted(topics))
    classify = ClassifyApp(settings, tasks)
    worker = faust.Worker(classify.app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()


__all__ = ["ClassifyApp", "TaskRuntime", "process_batch", "run_worker"]
