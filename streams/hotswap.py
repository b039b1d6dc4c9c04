"""Hot swap: follow the compacted ``models`` topic and swap the student between batches.

Every classify worker must see every announcement, so the follower reads ``models`` with a
consumer that has **no group**, from the beginning, at start. While catching up it keeps
only the newest announcement per task; once caught up, ``ready`` is set and each new
announcement is verified (checksum, label set, a warm-up batch) and swapped in. A bad
announcement is logged and ignored: the old model keeps serving.
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


def default_loader(settings: Settings) -> Loader:
    def load(announcement: ModelAnnouncement) -> StudentLike:
        from models.runtime import Student

        student = Student.load(
            path_of(announcement.uri),
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
    total = [float(sum(row)) for row in warm.probs]
    if not all(math.isfinite(t) and abs(t - 1.0) < 1e-3 for t in total):
        raise ModelError(f"warm-up of {announcement.version} gave non-probabilities")


class ModelHolder:
    """The student serving one task in this worker; swapped atomically between batches."""

    def __init__(self, task: str, loader: Loader, on_swap: Callable[[str, str], None]) -> None:
        self.task = task
        self.current: StudentLike | None = None
        self.rejected = 0
        self._loader = loader
        self._on_swap = on_swap

    def offer(self, announcement: ModelAnnouncement) -> bool:
        """Load, verify and swap in; False (old model kept) if anything is wrong."""
        if self.current is not None and self.current.version == announcement.version:
            return False
        try:
            student = self._loader(announcement)
            verify(student, announcement)
        except (DistilleryError, OSError, ValueError, RuntimeError) as exc:
            self.rejected += 1
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

    def __init__(self, settings: Settings, holders: dict[str, ModelHolder]) -> None:
        self.settings = settings
        self.holders = holders
        self.ready = asyncio.Event()
        self._consumer: Any = None

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.settings.topic("models")
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.settings.aiokafka_kwargs()
        )
        self._consumer = consumer
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            await self._catch_up(consumer, tp, end)
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        await self._apply(message.value)
        finally:
            self.ready.set()
            await consumer.stop()

    async def _catch_up(self, consumer: Any, tp: Any, end: int) -> None:
        latest: dict[str, bytes] = {}
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.key:
                    latest[message.key.decode("utf-8", "replace")] = message.value
        for value in latest.values():
            await self._apply(value)

    async def _apply(self, value: bytes | None) -> None:
        try:
            announcement = decode(value or b"", ModelAnnouncement)
        except DistilleryError as exc:
            log.error("ignoring an undecodable model announcement: %s", exc)
            return
        holder = self.holders.get(announcement.task)
        if holder is not None:
            await asyncio.to_thread(holder.offer, announcement)
