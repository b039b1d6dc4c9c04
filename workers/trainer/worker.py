"""``distillery worker trainer``: verdicts and feedback into the store; periodic refreshes.

An aiokafka consumer applies each message to the ``TrainingStore``, and a refresh runs on
the schedule of ``refresh_step`` — after a cold start early (50, 100, 200, 400 … verdicts),
then every ``refresh_every_verdicts`` new verdicts — or every ``refresh_every_minutes``
(when there is something new), in a thread so the consumer and the lock keep their groups.

One trainer per task. Several may run (on one host or several: a hot standby), but only the
holder of the task's lock refreshes, promotes and announces (``workers.trainer.leader``:
leader election through a consumer group on ``<task>.trainer.lock``); the others log
"standing by" once, show ``distillery_trainer_leader 0`` and take over when the leader
leaves. A leader checks with the broker that it still holds the lock right before it
announces a version; a version trained by a trainer that lost the lock meanwhile is not
announced and its local promotion is rolled back.

Every trainer, leader or standby, reads *every* partition of ``<task>.verdicts`` and
``<task>.feedback`` into its own store: the partitions are assigned, not shared through a
consumer group (a group would split the verdicts between the trainers, and a standby's store
would hold only part of them), and each resumes from the positions its store recorded in the
same SQLite transaction as the records (so a crash replays rather than loses, and a takeover
starts warm: the standby's store is as current as the leader's). The leader also commits its
positions to the group ``<prefix>distillery-trainer-<task>`` (without joining it), so
``distillery status`` shows the leading trainer's lag.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from workers.runtime.signals import run_until_signal
from workers.trainer.consume import apply_message
from workers.trainer.leader import LeadershipLost, TrainerLock, latest_announcements
from workers.trainer.schedule import due_by_verdicts
from workers.trainer.store import TrainingStore

log = logging.getLogger(__name__)

CATCH_UP_GRACE_S = 10.0  # a due refresh waits at most this long for the consumer to catch up

Confirm = Callable[[], bool]  # "does this trainer still hold the task's lock?" (asks the broker)


class Refresh(Protocol):
    def __call__(self, store: TrainingStore, confirm: Confirm) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WarmRefresh:
    """A refresh with a ``warm`` step the worker runs once at start, beside its consumer."""

    refresh: Refresh
    warm: Callable[[], None]

    def __call__(self, store: TrainingStore, confirm: Confirm) -> dict[str, Any]:
        return self.refresh(store, confirm)


def warm_up_training(settings: Settings, task: TaskConfig) -> None:
    """Train, calibrate and export a throwaway student on a few made-up texts (nothing is
    published): a process's first training pays one-off costs — torch's optimiser imports
    ``torch._dynamo``, the ONNX export and onnxruntime load and set up — that on two busy
    cores took seconds more than the training itself."""
    from models.pipeline import train_version

    names = task.label_names[:2]
    texts = [f"warm up {name} {i}" for name in names for i in range(12)]
    train_version(texts, [name for name in names for _ in range(12)], task=task,
                  settings=settings, buckets=1 << 10)


def _always() -> bool:
    return True


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
        self.catch_rate = Gauge("distillery_trainer_catch_rate",
                                "The serving version's catch rate per critical label, on its "
                                "held-out verdicts", ["task", "label"], registry=r)
        self.decided_accuracy = Gauge("distillery_trainer_decided_accuracy",
                                      "The serving version's accuracy on what it decides, on "
                                      "its held-out verdicts", ["task"], registry=r
                                      ).labels(**labels)
        self.leader = Gauge("distillery_trainer_leader",
                            "1 while this trainer holds its task's lock (refreshes and "
                            "announces), 0 while it stands by", ["task"], registry=r
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
    published under ``<task>/embed`` and announced (``workers.trainer.stages``); embeddings
    are kept in the store's ``embeddings`` table (the encoder is loaded on first need).

    ``confirm`` is asked right before each announcement: if this trainer no longer holds
    the task's lock, the version's local promotion is rolled back and ``LeadershipLost`` is
    raised (for tier 1 the refresh is recorded as failed; for tier 2 in its report).
    """
    from models.registry import Registry
    from streams.announce import announce_manifest
    from streams.modelstore import prune_versions
    from workers.trainer.embeddings import StoredEmbeddings
    from workers.trainer.refresh import refresh_config, refresh_once, stamp

    encoder: list[Any] = []
    loading = threading.Lock()  # the warm-up and a refresh may both ask first

    def encode(texts: list[str]) -> Any:
        with loading:
            if not encoder:
                from models.stage import encoder_loader

                encoder.append(encoder_loader(settings.cache_dir, settings.embed_threads,
                                              settings.embed_precision)())
        return encoder[0].encode(texts, 64)

    def refresh(store: TrainingStore, confirm: Confirm = _always) -> dict[str, Any]:
        def announce(manifest: Any) -> None:
            if not confirm():
                unpromote(Registry.from_settings(settings), manifest)
                raise LeadershipLost(f"task {manifest.task}: this trainer lost the task's lock "
                                     f"before announcing {manifest.version}; not announced")
            announce_manifest(settings, manifest, "promote")

        examples, contradicted = store.examples()
        outcome = refresh_once(
            settings, task, bootstrap, examples, contradicted, refresh_config(settings, task=task),
            announce=announce,
            embedder=StoredEmbeddings(store.db, encode) if task.cascade else None,
            announce_tier2=announce,
        )
        store.record_refresh(stamp(), outcome.promoted, outcome.version, outcome.reason,
                             outcome.report)
        log.info("task %s: refresh %s %s (%s); %d verdicts contradicted by feedback",
                 task.name, outcome.version, "promoted" if outcome.promoted else "rejected",
                 outcome.reason, contradicted)
        pruned = prune_versions(settings, task.name)
        if task.cascade:
            from models.stage import registry_key

            later = registry_key(task.name, "embed")
            pruned += [f"embed/{v}" for v in prune_versions(settings, later)]
        if pruned:
            log.info("task %s: pruned %s", task.name, ", ".join(pruned))
        return outcome.as_dict()

    def warm() -> None:
        warm_up_training(settings, task)
        if task.cascade:
            encode(["warm up"])  # loads the sentence encoder the refreshes embed with

    return WarmRefresh(refresh, warm)


def unpromote(registry: Any, manifest: Any) -> None:
    """Undo the local promotion of a version that will not be announced, so this host's
    registry does not name as serving a version no worker serves."""
    from distillery.errors import RegistryError

    if registry.state(manifest.task).get("serving") != manifest.version:
        return
    try:
        registry.rollback(manifest.task)
    except RegistryError as exc:  # the first version: nothing earlier to serve locally
        log.warning("task %s: %s stays the registry's serving version, unannounced (%s)",
                    manifest.task, manifest.version, exc)


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
        self.lock = TrainerLock(settings, task.name, self._leadership_changed)
        self._took_over = False  # became leader: re-announce what this host left unannounced
        self._due_since: float | None = None  # when a refresh fell due and waited to catch up

    def stop(self) -> None:
        self._stop.set()

    def due(self) -> bool:
        if self.new_verdicts <= 0:
            return False
        seen = self.store.counts()["verdicts"]  # the step grows with the verdicts seen
        if due_by_verdicts(self.new_verdicts, seen, self.settings.refresh_first_verdicts,
                           self.settings.refresh_every_verdicts):
            return True
        return time.monotonic() - self.last_refresh >= self.settings.refresh_every_minutes * 60

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            log.info("task %s: this trainer leads (lock %s): it refreshes and announces",
                     self.task.name, self.lock.group)
            self._took_over = True
        else:
            log.info("standing by: another trainer leads task %s (lock %s); reading the "
                     "verdicts into this store, taking over when it leaves", self.task.name,
                     self.lock.group)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        from streams.topics import trainer_lock_topic, wait_for_topics

        lock_topic = self.settings.topic(trainer_lock_topic(self.task.name))
        counts = await wait_for_topics(self.settings, [*self.roles, lock_topic])  # §4
        group = f"{self.settings.topic_prefix}distillery-trainer-{self.task.name}"
        consumer = AIOKafkaConsumer(
            group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
            **self.settings.aiokafka_kwargs(),
        )
        await consumer.start()
        await self.lock.start()
        warming = asyncio.ensure_future(asyncio.to_thread(self.warm_up))
        self.show_serving()
        try:
            tps = [TopicPartition(t, p) for t in self.roles for p in range(counts[t])]
            consumer.assign(tps)
            positions = self.store.positions()
            for tp in tps:
                if (tp.topic, tp.partition) in positions:
                    consumer.seek(tp, positions[(tp.topic, tp.partition)])
                else:
                    await consumer.seek_to_beginning(tp)
            self.metrics.store_size.set(self.store.counts()["verdicts"])
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                if batch:
                    self._apply(batch)
                    if self.lock.leading:  # for `distillery status`: the leader's lag
                        try:
                            await consumer.commit()
                        except KafkaError as exc:
                            log.debug("could not commit the trainer's positions: %s", exc)
                if not self.lock.leading:
                    continue
                if self._took_over:
                    self._took_over = False
                    await asyncio.to_thread(self.announce_serving)
                if self.due() and await self._caught_up(consumer, tps):
                    await warming  # the first refresh would pay for it otherwise
                    await asyncio.to_thread(self.run_refresh)
        finally:
            await self.lock.stop()
            await consumer.stop()
            self.store.close()

    async def _caught_up(self, consumer: Any, tps: list[Any]) -> bool:
        """Has the consumer read every verdict the broker had at its last fetch? A refresh
        trains on all of them, not on whichever partitions one fetch happened to bring (the
        verdicts of a backtest's lockstep batch are all in before the trainer resumes). A
        live stream may never be caught up: after ``CATCH_UP_GRACE_S`` due, it refreshes
        anyway."""
        now = time.monotonic()
        if self._due_since is None:
            self._due_since = now
        if now - self._due_since >= CATCH_UP_GRACE_S:
            return True
        for tp in tps:
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) < high:
                return False
        return True

    def _apply(self, batch: dict[Any, list[Any]]) -> None:
        for messages in batch.values():
            for message in messages:
                if apply_message(self.store, self.task, self.roles[message.topic], message):
                    self.new_verdicts += 1
        self.store.set_meta("new_verdicts", str(self.new_verdicts))
        self.store.commit()
        self.metrics.store_size.set(self.store.counts()["verdicts"])

    def show_serving(self) -> None:
        """The serving version's held-out figures as gauges (for dashboards and alerts)."""
        from models.registry import Registry

        try:
            manifest = Registry.from_settings(self.settings).serving(self.task.name)
        except Exception:  # a registry being written or unreadable: next time
            log.debug("no serving figures for %s yet", self.task.name, exc_info=True)
            return
        if manifest is None:
            return
        figures = manifest.metrics
        if "decided_accuracy" in figures:
            self.metrics.decided_accuracy.set(figures["decided_accuracy"])
        for key, value in figures.items():
            if key.startswith("catch:"):
                self.metrics.catch_rate.labels(self.task.name, key.removeprefix("catch:")
                                               ).set(value)

    def warm_up(self) -> None:
        """Run the refresh's ``warm`` step if it has one; a failure costs only the time."""
        warm = getattr(self.refresh, "warm", None)
        if warm is None:
            return
        started = time.monotonic()
        try:
            warm()
        except Exception:
            log.warning("task %s: the warm-up failed; the first refresh pays its costs",
                        self.task.name, exc_info=True)
            return
        log.info("task %s: warmed up for the first refresh in %.1f s", self.task.name,
                 time.monotonic() - started)

    def run_refresh(self) -> dict[str, Any]:
        log.info("task %s: refreshing the student (%d new verdicts)", self.task.name,
                 self.new_verdicts)
        try:
            outcome = self.refresh(self.store, self.lock.confirm_sync)
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
        self.show_serving()
        self.new_verdicts = 0
        self._due_since = None
        self.store.set_meta("new_verdicts", "0")
        self.last_refresh = time.monotonic()
        return outcome


    def announce_serving(self) -> None:
        """On taking the lead: announce this host's serving version if the ``models`` topic
        lacks it — a version promoted but not yet announced when the trainer died would
        otherwise never serve.

        It is announced when the topic has no announcement for the task, or names a version
        this registry served *before* its serving one (this trainer promoted past it). It is
        not when the topic names a version this registry never served: another trainer led
        meanwhile, and this host's serving version is older than what serves."""
        from models.registry import Registry
        from streams.announce import announce_manifest

        try:
            registry = Registry(self.settings.registry_root)
            keys = [self.task.name]
            if self.task.cascade:  # and its tier-2 version, for the refine worker
                from models.stage import registry_key

                keys.append(registry_key(self.task.name, "embed"))
            latest = asyncio.run(latest_announcements(self.settings))
            for key in keys:
                manifest = registry.serving(key)
                if manifest is None:
                    continue
                announced = latest.get(key)
                if announced is not None:
                    if announced.sha256 == manifest.sha256:
                        continue  # it serves already
                    earlier = registry.state(key).get("history", [])[:-1]
                    if not any(_sha_of(registry, key, v) == announced.sha256 for v in earlier):
                        log.info("task %s: %s serves (announced by another trainer); this "
                                 "host's %s is not re-announced", key, announced.version,
                                 manifest.version)
                        continue
                if not self.lock.confirm_sync():
                    return
                announce_manifest(self.settings, manifest, "promote")
                log.info("task %s: re-announced serving version %s", key, manifest.version)
        except Exception as exc:  # noqa: BLE001 - the next promotion announces anyway
            log.warning("task %s: could not re-announce the serving version: %s",
                        self.task.name, exc)


def _sha_of(registry: Any, key: str, version: str) -> str | None:
    try:
        return str(registry.show(key, version).sha256)
    except Exception:  # noqa: BLE001 - a pruned version
        return None


def run_trainer(settings: Settings, task: TaskConfig, refresh: Refresh) -> None:
    """Run until SIGTERM/SIGINT; serves metrics on ``settings.metrics_port`` (0: off)."""
    worker = TrainerWorker(settings, task, refresh)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=worker.metrics.registry)
    run_until_signal(worker)
