"""Replaying topic ranges: rebuild a training set and train, or re-score inputs (backfill)."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from schemas.records import Decision, TeacherRequest
from schemas.serde import encode
from streams.decode import Item, RawEvent, decode_event
from workers.trainer.consume import apply_message, read_range
from workers.trainer.store import TrainingStore


def retrain_from(settings: Settings, task: TaskConfig, topic: str, since: datetime | None,
                 until: datetime | None) -> dict[str, Any]:
    """Train a version from a verdicts topic range (plus its feedback topic), gate, announce."""
    from streams.announce import announce_manifest
    from workers.trainer.refresh import refresh_config, refresh_once

    roles = {topic: "verdicts", settings.topic(task.feedback_topic): "feedback"}
    messages = asyncio.run(read_range(settings, list(roles), since, until))
    with tempfile.TemporaryDirectory() as tmp:
        store = TrainingStore(Path(tmp) / "replay.sqlite")
        for message in messages:
            apply_message(store, task, roles[message.topic], message)
        store.commit()
        examples, contradicted = store.examples()
        store.close()
    outcome = refresh_once(settings, task, [], examples, contradicted,
                           refresh_config(settings, task=task),
                           announce=lambda m: announce_manifest(settings, m, "promote"))
    return outcome.as_dict()


def rescore(settings: Settings, task: TaskConfig, source: str, target: str,
            since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Re-score an input range with the serving student under its routing policy: what the
    policy lets it decide goes to ``target`` as a decision (keyed by id, in the task's output
    format); critical and low-confidence items go to the task's teacher topic, as on the live
    stream — a backfill must not let the student decide what it may not decide live."""
    from kafka import KafkaProducer

    from models.policy import decide
    from models.registry import Registry

    student = Registry(settings.registry_root).load_student(task.name,
                                                            threads=settings.student_threads)
    messages = asyncio.run(read_range(settings, [source], since, until))
    items: list[Item] = []
    dead = 0
    for m in messages:
        decoded = decode_event(task, RawEvent.of_record(m),
                               settings.max_text_chars)
        if isinstance(decoded, Item):
            items.append(decoded)
        else:
            dead += 1
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    teacher_topic = settings.topic(task.teacher_topic)
    futures, deferred = [], 0
    try:
        for start in range(0, len(items), 1024):
            batch = items[start:start + 1024]
            decided = decide(student.predict_proba([i.text for i in batch]),
                             student.routing_policy(settings.critical_floor))
            reasons = decided.reasons()
            for i, item in enumerate(batch):
                label = student.labels[int(decided.label_ids[i])]
                conf = min(1.0, float(decided.confidence[i]))
                key = item.record.id.encode()
                if not bool(decided.decided[i]):
                    # the policy holds here as on the live stream: critical and
                    # low-confidence items go to the teacher, which decides them
                    request = TeacherRequest(
                        id=item.record.id, task=task.name, text=item.text,
                        metadata=item.record.metadata, student_label=label,
                        student_confidence=conf, model_version=student.version,
                        reason="critical" if reasons[i] == "critical" else "low_confidence")
                    futures.append(producer.send(teacher_topic, key=key, value=encode(request)))
                    deferred += 1
                    continue
                decision = Decision(
                    id=item.record.id, task=task.name, label=label, confidence=conf,
                    decided_by="student", model_version=student.version, reason="confident",
                    latency_ms=0.0, cost=0.0,
                )
                futures.append(producer.send(target, key=key,
                                             value=encode(decision, task.output_format)))
        producer.flush()
        for future in futures:  # raises if the broker refused a record
            future.get(timeout=settings.producer_request_timeout_s)
    finally:
        producer.close()
    return {"scored": len(items) - deferred, "to_teacher": deferred, "dead": dead,
            "version": student.version}
