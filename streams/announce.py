"""Announce which student version serves a task, on the compacted ``models`` topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillery.errors import BrokerError
from distillery.settings import Settings
from schemas.records import ModelAnnouncement
from schemas.registry import frame
from schemas.serde import encode
from streams.topics import MODELS_TOPIC


def announcement_for(
    task: str,
    version: str,
    directory: Path,
    sha256: str,
    labels: list[str],
    metrics: dict[str, float],
    action: str = "promote",
) -> ModelAnnouncement:
    return ModelAnnouncement(
        task=task,
        version=version,
        uri=directory.resolve().as_uri(),
        sha256=sha256,
        labels=labels,
        metrics={k: float(v) for k, v in metrics.items()},
        action=action,  # type: ignore[arg-type]
    )


def publish_announcement(settings: Settings, announcement: ModelAnnouncement) -> None:
    """Send one announcement, keyed by task, and wait until the broker has it."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer: Any = None
    try:
        producer = KafkaProducer(client_id="distillery-announce",
                                 **settings.kafka_python_producer_kwargs())
        future = producer.send(
            settings.topic(MODELS_TOPIC), key=announcement.task.encode("utf-8"),
            value=frame(settings.topic(MODELS_TOPIC), encode(announcement)),
        )
        future.get(timeout=30)
    except KafkaError as exc:
        raise BrokerError(
            f"could not announce {announcement.task} {announcement.version} on "
            f"{settings.topic(MODELS_TOPIC)}: {exc}"
        ) from exc
    finally:
        if producer is not None:
            producer.close()


def announce_manifest(settings: Settings, manifest: Any, action: str = "promote") -> None:
    """Announce a registry manifest (``models.registry.Manifest``) as serving its task.

    With ``DISTILLERY_MODEL_STORE=kafka`` the version's bytes are written to ``models.blobs``
    first and the announcement's ``uri`` is their ``kafka://`` address (any host can load
    them); else it is the registry folder's ``file://`` path."""
    announcement = announcement_for(
        manifest.task, manifest.version, manifest.directory, manifest.sha256, manifest.labels,
        manifest.metrics, action,
    )
    if settings.model_store == "kafka":
        from streams.modelstore import publish_version

        uri = publish_version(settings, manifest.task, manifest.version, manifest.directory)
        announcement = announcement.model_copy(update={"uri": uri})
    publish_announcement(settings, announcement)
