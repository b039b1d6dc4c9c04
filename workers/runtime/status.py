"""``distillery status``: the broker, the supervised workers, consumer lag, serving models.

A group member that holds no partitions is shown as a problem (state ``problem``): a worker
that subscribed before its topics were in its metadata sits idle for minutes.
"""

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


def _count_partitions(assignment: Any) -> int:
    """Partitions in a decoded member assignment (dicts/lists from kafka-python's admin)."""
    if isinstance(assignment, dict):
        if "partitions" in assignment and isinstance(assignment["partitions"], list):
            return len(assignment["partitions"])
        return sum(_count_partitions(v) for v in assignment.values())
    if isinstance(assignment, list | tuple):
        return sum(_count_partitions(v) for v in assignment)
    return 0


def idle_members(settings: Settings, group: str) -> list[str] | None:
    """Client ids of the group's members that hold no partition (None: cannot tell)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=5000)
        try:
            described = admin.describe_groups([group]).get(group) or {}
        finally:
            admin.close()
    except (KafkaError, OSError, ValueError):
        return None
    if str(described.get("group_state", described.get("state", ""))) not in ("Stable", ""):
        return []  # rebalancing: assignments are not final yet
    idle = []
    for member in described.get("members") or []:
        if _count_partitions(member.get("member_assignment")) == 0:
            idle.append(str(member.get("client_id") or member.get("member_id")))
    return idle


def teacher_health(settings: Settings, name: str) -> str:
    """``"open (rejected:http_400)"`` while a teacher worker on this host reports its breaker
    not closed; ``""`` otherwise (or for a component that is no teacher)."""
    from workers.teacher.store import health_path

    if not name.startswith("teacher-"):
        return ""
    try:
        health = json.loads(health_path(settings, name.removeprefix("teacher-"))
                            .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not health.get("unavailable"):
        return ""
    if health.get("breaker") == "open":
        return f"open ({health.get('cause') or 'unavailable'})"
    return "closed, budget spent: waiting"


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
        idle = idle_members(settings, group) if running else None
        row = {"name": name, "state": "running" if alive(child.get("pid")) else "stopped",
               "lag": lag, "restarts": child.get("restarts", 0),
               "detail": f"lag {lag}" if lag is not None else "no committed offsets"}
        health = teacher_health(settings, name) if row["state"] == "running" else ""
        if health:
            row["breaker"] = health
            row["state"] = "problem"
            row["detail"] = f"teacher breaker {health}; {row['detail']}"
        if idle:
            row["state"] = "problem"
            row["detail"] = (f"{len(idle)} member(s) hold no partitions ({', '.join(idle)}): "
                             f"idle until their metadata refreshes; {row['detail']}")
        rows.append(row)
    registry = Registry(settings.registry_root)
    for t in tasks:
        serving = registry.state(t.name).get("serving")
        rows.append({"name": f"model {t.name}", "state": serving or "none",
                     "detail": "serving version" if serving else "cold start: teacher decides"})
    return {"components": rows}
