"""``distillery worker trainer``: verdicts and feedback into the store; periodic refreshes.

A grouped aiokafka consumer applies each message to the ``TrainingStore`` (committing the
store before the Kafka offsets, so a crash replays rather than loses), and a refresh runs
on the schedule of ``refresh_step`` — after a cold start early (50, 100, 200, 400 …
verdicts), then every ``refresh_every_verdicts`` new verdicts — or every
``refresh_every_minutes`` (when there is something new), in a thread so the consumer keeps
its group membership.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from workers.runtime.signals import run_until_signal
from workers.trainer.consume import apply_message
from workers.trainer.schedule import refresh_step
from workers.trainer.store import TrainingStore

log = logging.getLogger(__name__)

Refresh = Callable[[TrainingStore], dict[str, Any]]


class TrainerMetrics:
    def __init__(self, task: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = {"task": task}
        self.store_size = Gauge("distillery_trainer_store_verdicts", "Verdicts in the store",
                                ["task"], registry=r).labels(**labels)
        self.refreshes = Counter("distillery_trainer_refreshes_total", "Refreshes run",
                                 ["task"], registry=r).labels(**labels)
        self.promotions = Counter("distillery_trainer_promotions_total", "Versions promoted",
                                  ["task"], registry=r).labels(**labels)
        self.rejections = Counter("distillery_trainer_rejections_total", "Versions rejected",
                                  ["task"], registry=r).labels(**labels)
        self.last_refresh = Gauge("distillery_trainer_last_refresh_timestamp_seconds",
                                  "When the last refresh ended", ["task"], registry=r
                                  ).labels(**labels)


def store_path(settings: Settings, task: TaskConfig) -> Any:
    return settings.state_dir / "trainer" / f"{settings.topic_prefix}{task.name}.sqlite"


def store_refresher(settings: Settings, task: TaskConfig,
                    bootstrap: list[tuple[str, str]]) -> Refresh:
    """The worker's refresh: the store's examples (plus ``bootstrap``) through ``refresh_once``.

    Every refresh, promoted or rejected, is recorded in the store with its reason and slice
    table; a promoted version is announced on the ``models`` topic. Then old versions are
    pruned: the registry keeps the serving one, the one a rollback returns to, and the newest
    ``registry_keep`` (a version is 16-67 MB; a long-running trainer would fill the disk).

    A task whose ``tiers`` include ``embed`` also gets its tier-2 head trained, gated,
    published under ``<task>/embed`` and announced (``workers.trainer.tier2``); embeddings
    are kept in the store's ``embeddings`` table (the encoder is loaded on first need).
    """
    from models.registry import Registry
    from streams.announce import announce_manifest
    from workers.trainer.embeddings import StoredEmbeddings
    from workers.trainer.refresh import refresh_config, refresh_once, stamp

    encoder: list[Any] = []

    def encode(texts: list[str]) -> Any:
        if not encoder:
            from models.embed.tier2 import encoder_loader

            encoder.append(encoder_loader(settings.cache_dir, settings.student_threads)())
        return encoder[0].encode(texts, 64)

    def refresh(store: TrainingStore) -> dict[str, Any]:
        examples, contradicted = store.examples()
        outcome = refresh_once(
            settings, task, bootstrap, examples, contradicted, refresh_config(settings),
            announce=lambda m: announce_manifest(settings, m, "promote"),
            embedder=StoredEmbeddings(store.db, encode) if task.cascade else None,
            announce_tier2=lambda m: announce_manifest(settings, m, "promote"),
        )
        store.record_refresh(stamp(), outcome.promoted, outcome.version, outcome.reason,
                             outcome.report)
        log.info("task %s: refresh %s %s (%s); %d verdicts contradicted by feedback",
                 task.name, outcome.version, "promoted" if outcome.promoted else "rejected",
                 outcome.reason, contradicted)
        registry = Registry.from_settings(settings)
        pruned = registry.prune(task.name)
        if task.cascade:
            from models.embed.tier2 import registry_key

            pruned += [f"embed/{v}" for v in registry.prune(registry_key(task.name))]
        if pruned:
            log.info("task %s: pruned %s", task.name, ", ".join(pruned))
        return outcome.as_dict()

    return refresh


class TrainerWorker:
    def __init__(self, settings: Settings, task: TaskConfig, refresh: Refresh) -> None:
        self.settings = settings
        self.task = task
        self.refresh = refresh
        self.store = TrainingStore(store_path(settings, task))
        self.metrics = TrainerMetrics(task.name)
        self.roles = {settings.topic(task.verdicts_topic): "verdicts",
                      settings.topic(task.feedback_topic): "feedback"}
        self.new_verdicts = int(self.store.get_meta("new_verdicts", "0"))
        self.last_refresh = time.monotonic()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def due(self) -> bool:
        if self.new_verdicts <= 0:
            return False
        seen = self.store.counts()["verdicts"]  # the step grows with the verdicts seen
        if self.new_verdicts >= refresh_step(max(0, seen - self.new_verdicts),
                                             self.settings.refresh_first_verdicts,
                                             self.settings.refresh_every_verdicts):
            return True
        return time.monotonic() - self.last_refresh >= self.settings.refresh_every_minutes * 60

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from streams.topics import wait_for_topics

        await wait_for_topics(self.settings, list(self.roles))  # else: no partitions (§4)
        await asyncio.to_thread(self.announce_serving)
        group = f"{self.settings.topic_prefix}distillery-trainer-{self.task.name}"
        consumer = AIOKafkaConsumer(
            *self.roles, group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest", metadata_max_age_ms=30_000,
            **self.settings.aiokafka_kwargs(),
        )
        await consumer.start()
        self.metrics.store_size.set(self.store.counts()["verdicts"])
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                if batch:
                    self._apply(batch)
                    await consumer.commit()
                if self.due():
                    await asyncio.to_thread(self.run_refresh)
        finally:
            await consumer.stop()
            self.store.close()

    def _apply(self, batch: dict[Any, list[Any]]) -> None:
        for messages in batch.values():
            for message in messages:
                if apply_message(self.store, self.task, self.roles[message.topic], message):
                    self.new_verdicts += 1
        self.store.set_meta("new_verdicts", str(self.new_verdicts))
        self.store.commit()
        self.metrics.store_size.set(self.store.counts()["verdicts"])

    def run_refresh(self) -> dict[str, Any]:
        log.info("task %s: refreshing the student (%d new verdicts)", self.task.name,
                 self.new_verdicts)
        try:
            outcome = self.refresh(self.store)
        except Exception as exc:  # a failed refresh is recorded; the worker goes on
            log.exception("task %s: refresh failed; recorded, the serving version stays",
                          self.task.name)
            reason = f"failed: {type(exc).__name__}: {exc}"[:500]
            self.store.record_refresh(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      False, None, reason, {})
            outcome = {"promoted": False, "version": None, "reason": reason}
        self.metrics.refreshes.inc()
        (self.metrics.promotions if outcome.get("promoted") else self.metrics.rejections).inc()
        self.metrics.last_refresh.set(time.time())
        self.new_verdicts = 0
        self.store.set_meta("new_verdicts", "0")
        self.last_refresh = time.monotonic()
        return outcome


    def announce_serving(self) -> None:
        """Announce the registry's serving version again: a version promoted but not yet
        announced when the trainer died would otherwise never serve (announcements are
        idempotent: a worker already serving it ignores it)."""
        from models.registry import Registry
        from streams.announce import announce_manifest

        try:
            registry = Registry(self.settings.registry_root)
            keys = [self.task.name]
            if self.task.cascade:  # and its tier-2 version, for the refine worker
                from models.embed.tier2 import registry_key

                keys.append(registry_key(self.task.name))
            for key in keys:
                manifest = registry.serving(key)
                if manifest is not None:
                    announce_manifest(self.settings, manifest, "promote")
                    log.info("task %s: re-announced serving version %s", key,
                             manifest.version)
        except Exception as exc:  # noqa: BLE001 - the next promotion announces anyway
            log.warning("task %s: could not re-announce the serving version: %s",
                        self.task.name, exc)


def run_trainer(settings: Settings, task: TaskConfig, refresh: Refresh) -> None:
    """Run until SIGTERM/SIGINT; serves metrics on ``settings.metrics_port`` (0: off)."""
    worker = TrainerWorker(settings, task, refresh)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
    run_until_signal(worker)
