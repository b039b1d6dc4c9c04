"""Hot swap: follow the compacted ``models`` topic and swap the student between batches.

Every classify worker must see every announcement, so the follower reads every partition
of ``models`` with a consumer that has **no group**, from the beginning, at start (after
waiting until the topic is in the cluster metadata). While catching up it keeps only the
newest announcement per task; once caught up, ``ready`` is set and each new announcement is
verified (a path inside the registry root, checksum, label set, a warm-up batch) and
swapped in. A bad announcement — whatever it raises — is refused, logged and counted
(``distillery_model_rejected_total``): the old model keeps serving. If a task still has no
model after catch-up (its newest announcement cannot load), the registry's serving version
is tried, so one bad announcement does not put a worker in cold start.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from distillery.errors import DistilleryError, ModelError
from distillery.settings import Settings
from schemas.records import ModelAnnouncement
from schemas.serde import decode
from streams.routing import StudentLike

log = logging.getLogger(__name__)

Loader = Callable[[ModelAnnouncement], StudentLike]


def path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ModelError(f"model uri scheme {parsed.scheme!r} is not supported (file:// only)")
    return Path(unquote(parsed.path))


def inside_registry(settings: Settings, uri: str) -> Path:
    """The announced path, if it lies inside the registry root; else ``ModelError``."""
    path = path_of(uri).resolve()
    root = settings.registry_root.resolve()
    if not path.is_relative_to(root):
        raise ModelError(f"model path {path} is outside the registry root {root}")
    return path


def announced_directory(settings: Settings, announcement: ModelAnnouncement) -> Path:
    """Where an announced version's files are on this host, or ``ModelError``.

    A ``kafka://`` URI is followed only when the model store is ``kafka``, and must name the
    announcement's own task and version; any other URI must lie inside the registry root."""
    if not announcement.uri.startswith("kafka://"):
        return inside_registry(settings, announcement.uri)
    from streams.modelstore import fetch_version, parse_uri

    if settings.model_store != "kafka":
        raise ModelError(f"{announcement.uri!r} is on Kafka but DISTILLERY_MODEL_STORE is "
                         f"{settings.model_store!r}; refused")
    _, task, version, _, _ = parse_uri(announcement.uri)
    if (task, version) != (announcement.task, announcement.version):
        raise ModelError(f"{announcement.uri!r} names {task} {version}, but the announcement "
                         f"is for {announcement.task} {announcement.version}; refused")
    return fetch_version(settings, announcement.uri)


def default_loader(settings: Settings) -> Loader:
    def load(announcement: ModelAnnouncement) -> StudentLike:
        from models.stage import Stage

        directory = announced_directory(settings, announcement)
        student = Stage.load(
            directory,
            expected_sha256=announcement.sha256,
            threads=settings.student_threads,
        )
        return student

    return load


def verify(student: StudentLike, announcement: ModelAnnouncement) -> None:
    """Label set as announced and a sane warm-up batch, or ``ModelError``."""
    if list(student.labels) != list(announcement.labels):
        raise ModelError(
            f"label set of {announcement.version} differs from its announcement"
        )
    warm = student.predict_many(["warm up", "a second warm-up item"])
    dtype = getattr(warm.probs, "dtype", None)
    if dtype is not None and str(dtype) != "float32":
        raise ModelError(f"warm-up of {announcement.version} gave {dtype} probabilities, "
                         "not float32")
    total = [float(sum(row)) for row in warm.probs]
    if not all(math.isfinite(t) and abs(t - 1.0) < 1e-3 for t in total):
        raise ModelError(f"warm-up of {announcement.version} gave non-probabilities")


class ModelHolder:
    """The student serving one task in this worker; swapped atomically between batches."""

    def __init__(self, task: str, loader: Loader, on_swap: Callable[[str, str], None],
                 on_reject: Callable[[str], None] = lambda task: None) -> None:
        self.task = task
        self.current: StudentLike | None = None
        self.rejected = 0
        self._loader = loader
        self._on_swap = on_swap
        self._on_reject = on_reject

    def offer(self, announcement: ModelAnnouncement) -> bool:
        """Load, verify and swap in; False (old model kept) if anything is wrong."""
        if self.current is not None and self.current.version == announcement.version:
            return False
        try:
            student = self._loader(announcement)
            verify(student, announcement)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the model, never crashes
            self.rejected += 1
            self._on_reject(self.task)
            log.error("task %s: refusing model %s (%s); %s keeps serving", self.task,
                      announcement.version, exc,
                      self.current.version if self.current else "no model")
            return False
        self.current = student
        self._on_swap(self.task, announcement.version)
        log.info("task %s: now serving model %s (%s)", self.task, announcement.version,
                 announcement.action)
        return True


class AnnouncementFollower:
    """Reads ``models`` without a group and feeds each task's holder."""

    def __init__(self, settings: Settings, holders: dict[str, ModelHolder],
                 fallback: Callable[[str], ModelAnnouncement | None] | None = None) -> None:
        self.settings = settings
        self.holders = holders
        self.ready = asyncio.Event()
        self.fallback = fallback if fallback is not None else self._registry_serving
        self._consumer: Any = None

    async def run_forever(self, what: str = "model follower") -> None:
        """``run``, restarted two seconds after anything but a cancellation stops it: a
        worker must keep following announcements whatever the broker does."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s stopped (%s); restarting in 2s", what, exc)
                await asyncio.sleep(2.0)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from streams.topics import wait_for_topics

        topic = self.settings.topic("models")
        partitions = (await wait_for_topics(self.settings, [topic]))[topic]
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.settings.aiokafka_kwargs()
        )
        self._consumer = consumer
        try:
            await consumer.start()
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            await self._catch_up(consumer, tps, end)
        except Exception:
            await self._ready_if_served()
            raise
        else:
            await self._fall_back_where_empty()
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        await self._apply(message.value)
        finally:
            await consumer.stop()

    async def _ready_if_served(self) -> None:
        """Catch-up failed (``run_forever`` tries again): ready only if every task has a
        model, the registry's serving version if need be. Not ready otherwise: a worker that
        consumed now would send everything to the teacher as a cold start."""
        if self.ready.is_set():
            return
        await self._fall_back_where_empty()
        if all(holder.current is not None for holder in self.holders.values()):
            self.ready.set()

    async def _catch_up(self, consumer: Any, tps: list[Any], end: dict[Any, int]) -> None:
        latest: dict[str, tuple[int, bytes]] = {}  # task -> (timestamp, value)
        pending = [tp for tp in tps if await consumer.position(tp) < end[tp]]
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    if not message.key:
                        continue
                    task = message.key.decode("utf-8", "replace")
                    if task not in latest or message.timestamp >= latest[task][0]:
                        latest[task] = (message.timestamp, message.value)
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        for _, value in latest.values():
            await self._apply(value)

    async def _fall_back_where_empty(self) -> None:
        """A task whose newest announcement could not load: try the registry's serving one."""
        for task, holder in self.holders.items():
            if holder.current is not None:
                continue
            try:
                announcement = await asyncio.to_thread(self.fallback, task)
            except Exception as exc:  # noqa: BLE001 - a broken registry: stay in cold start
                log.error("task %s: no serving version in the registry to fall back on (%s)",
                          task, exc)
                continue
            if announcement is not None:
                log.warning("task %s: falling back to the registry's serving version %s",
                            task, announcement.version)
                await asyncio.to_thread(holder.offer, announcement)

    def _registry_serving(self, task: str) -> ModelAnnouncement | None:
        from models.registry import Registry
        from streams.announce import announcement_for

        manifest = Registry(self.settings.registry_root).serving(task)
        if manifest is None:
            return None
        return announcement_for(manifest.task, manifest.version, manifest.directory,
                                manifest.sha256, manifest.labels, manifest.metrics)

    async def _apply(self, value: bytes | None) -> None:
        try:
            announcement = decode(value or b"", ModelAnnouncement)
        except DistilleryError as exc:
            log.error("ignoring an undecodable model announcement: %s", exc)
            return
        holder = self.holders.get(announcement.task)
        if holder is not None:
            await asyncio.to_thread(holder.offer, announcement)
