"""Reading ``<task>.verdicts`` and ``<task>.feedback`` into a ``TrainingStore``.

``apply_message`` is shared by the live trainer (a grouped consumer) and by ``rebuild``
(no group, from the beginning to the end offsets), so a rebuilt store holds exactly what
the live one holds.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from distillery.errors import DistilleryError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import Feedback, TeacherVerdict
from schemas.serde import decode
from workers.trainer.store import TrainingStore

log = logging.getLogger(__name__)


def apply_message(store: TrainingStore, task: TaskConfig, topic_role: str, message: Any) -> bool:
    """Store one verdict or feedback message; True if it was a (new or updated) verdict."""
    try:
        if topic_role == "verdicts":
            verdict = decode(message.value or b"", TeacherVerdict)
            if verdict.task != task.name or verdict.label not in task.label_names:
                log.warning("skipping verdict %s: label %r is not one of task %s's", verdict.id,
                            verdict.label, task.name)
                return False
            stamp = getattr(message, "timestamp", None)
            store.add_verdict(verdict, int(stamp) if stamp is not None and stamp >= 0 else None)
            return True
        feedback = decode(message.value or b"", Feedback)
        if feedback.task != task.name or feedback.label not in task.label_names:
            log.warning("skipping feedback %s: label %r is not one of task %s's", feedback.id,
                        feedback.label, task.name)
            return False
        store.add_feedback(feedback)
        return False
    except DistilleryError as exc:
        log.warning("skipping an undecodable %s record at %s[%s]@%s: %s", topic_role,
                    message.topic, message.partition, message.offset, exc)
        return False
    finally:
        store.set_position(message.topic, message.partition, message.offset + 1)


def in_window(message: Any, since: datetime | None, until: datetime | None) -> bool:
    stamp = message.timestamp / 1000.0
    if since is not None and stamp < since.timestamp():
        return False
    return until is None or stamp < until.timestamp()


async def read_range(
    settings: Settings, topics: list[str], since: datetime | None = None,
    until: datetime | None = None,
) -> list[Any]:
    """Every message of ``topics`` (no group) from the start (or ``since``) to the end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False,
                                **settings.aiokafka_kwargs())
    await consumer.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t))]
        consumer.assign(tps)
        await _seek(consumer, tps, since)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batch.items():
                out.extend(m for m in messages if m.offset < end[tp] and in_window(m, since, until))
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    out.sort(key=lambda m: (m.timestamp, m.topic, m.partition, m.offset))
    return out


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # aiokafka has no public call for this
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise DistilleryError(f"topic {topic} does not exist")
    return set(partitions)


async def _seek(consumer: Any, tps: list[Any], since: datetime | None) -> None:
    if since is None:
        await consumer.seek_to_beginning(*tps)
        return
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
    end = await consumer.end_offsets(tps)
    for tp in tps:
        offset = found.get(tp)
        consumer.seek(tp, offset.offset if offset is not None else end[tp])


async def rebuild(settings: Settings, task: TaskConfig, store: TrainingStore) -> int:
    """Replay the verdicts and feedback topics into ``store``; returns messages applied."""
    roles = {settings.topic(task.verdicts_topic): "verdicts",
             settings.topic(task.feedback_topic): "feedback"}
    messages = await read_range(settings, list(roles))
    for message in messages:
        apply_message(store, task, roles[message.topic], message)
    store.commit()
    return len(messages)


async def rebuild_store(settings: Settings, task: TaskConfig) -> int:
    """Rebuild the task's store from its topics into a new file, then swap it in.

    The old store stays in place until the new one is complete, so a failed rebuild (or
    topics whose retention already dropped old verdicts) never leaves the trainer with less
    than it had; the old file is kept beside it as ``.bak``.
    """
    from workers.trainer.worker import store_path

    path = store_path(settings, task)
    fresh = path.with_suffix(".rebuilding")
    fresh.unlink(missing_ok=True)
    store = TrainingStore(fresh)
    try:
        count = await rebuild(settings, task, store)
    finally:
        store.close()
    if path.exists():
        path.replace(path.with_suffix(".bak"))
    fresh.replace(path)
    return count
