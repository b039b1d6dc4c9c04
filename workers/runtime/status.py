"""``distillery status``: the broker, the supervised workers, consumer lag, serving models."""

from __future__ import annotations

import json
from typing import Any

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from workers.runtime.broker import EmbeddedBroker
from workers.runtime.procs import alive
from workers.runtime.supervisor import up_file


def _lag(settings: Settings, group: str) -> int | None:
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=5000)
        committed = admin.list_group_offsets(group).get(group) or {}
        admin.close()
        if not committed:
            return None
        consumer = KafkaConsumer(**settings.kafka_python_kwargs())
        ends = consumer.end_offsets(list(committed))
        consumer.close()
    except (KafkaError, OSError):
        return None
    offsets = {tp: getattr(meta, "offset", meta) for tp, meta in committed.items()}
    return int(sum(max(0, ends[tp] - int(offset)) for tp, offset in offsets.items()
                   if offset is not None and int(offset) >= 0))


def gather(settings: Settings, tasks: list[TaskConfig]) -> dict[str, Any]:
    from models.registry import Registry

    rows: list[dict[str, Any]] = []
    if "kafka_bootstrap" in settings.model_fields_set:
        rows.append({"name": "kafka", "state": "configured", "detail": settings.kafka_bootstrap})
    else:
        status = EmbeddedBroker(settings).status()
        rows.append({"name": "kafka (embedded)", "state": "running" if status.running
                     else "stopped", "detail": status.bootstrap})
        settings = settings.model_copy(update={"kafka_bootstrap": status.bootstrap})
    state = {}
    if up_file(settings).is_file():
        state = json.loads(up_file(settings).read_text(encoding="utf-8"))
    groups = {"classify": f"{settings.topic_prefix}distillery-classify"}
    for t in tasks:
        groups[f"teacher-{t.name}"] = f"{settings.topic_prefix}distillery-teacher-{t.name}"
        groups[f"trainer-{t.name}"] = f"{settings.topic_prefix}distillery-trainer-{t.name}"
    running = rows[0]["state"] != "stopped"
    for name, group in groups.items():
        child = state.get("children", {}).get(name, {})
        lag = _lag(settings, group) if running else None
        rows.append({"name": name, "state": "running" if alive(child.get("pid")) else "stopped",
                     "lag": lag, "restarts": child.get("restarts", 0),
                     "detail": f"lag {lag}" if lag is not None else "no committed offsets"})
    registry = Registry(settings.registry_root)
    for t in tasks:
        serving = registry.state(t.name).get("serving")
        rows.append({"name": f"model {t.name}", "state": serving or "none",
                     "detail": "serving version" if serving else "cold start: teacher decides"})
    return {"components": rows}
