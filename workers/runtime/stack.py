"""Bringing the whole system up: the broker (embedded unless one is configured), the topics,
and every worker of every task as supervised children."""

from __future__ import annotations

import logging
from pathlib import Path

from distillery.errors import BrokerError
from distillery.settings import ENV_PREFIX, Settings, child_env
from distillery.tasks import TaskConfig
from streams.topics import create_topics
from workers.runtime.broker import EmbeddedBroker
from workers.runtime.secure import SecureFiles
from workers.runtime.supervisor import Child

log = logging.getLogger(__name__)


def ensure_broker(settings: Settings, secure: bool = False
                  ) -> tuple[Settings, EmbeddedBroker | None]:
    """Use the configured cluster if ``DISTILLERY_KAFKA_BOOTSTRAP`` was set, else the embedded
    broker (started if needed; ``secure``: the SASL_SSL one, as its ``admin``). Returns the
    settings to use and the broker started, if any."""
    if secure:
        broker = EmbeddedBroker(settings, secure=True)
        started = broker.start()
        return broker.client_settings("admin"), broker if started else None
    if "kafka_bootstrap" in settings.model_fields_set:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=5000).close()
        except (KafkaError, OSError) as exc:
            raise BrokerError(f"DISTILLERY_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} does "
                              f"not answer: {exc}") from exc
        return settings, None
    broker = EmbeddedBroker(settings)
    started = broker.start()
    local = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    return local, broker if started else None


_CONNECTION = ("KAFKA_BOOTSTRAP", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM",
               "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE")


def role_env(env: dict[str, str], roles: SecureFiles | None, role: str) -> dict[str, str]:
    """A child's environment connecting as ``role`` of the secure broker: its role file
    (``DISTILLERY_CONFIG``) instead of the parent's connection settings and password."""
    if roles is None:
        return env
    kept = {k: v for k, v in env.items()
            if k.upper().removeprefix(ENV_PREFIX) not in _CONNECTION}
    return {**kept, ENV_PREFIX + "CONFIG": str(roles.role_config(role))}


def classify_children(settings: Settings, tasks: list[TaskConfig], logs: Path,
                      workers: int = 1, roles: SecureFiles | None = None) -> list[Child]:
    """``workers`` classify workers for all tasks, in one consumer group (Kafka shares the
    input partitions among them). Each has its own faust web port (``web_port + i``, for its
    /metrics) and log file; one worker keeps the old name, ``classify``."""
    if workers < 1:
        raise ValueError("at least one classify worker")
    argv = ["worker", "classify", *sum((["--task", t.name] for t in tasks), [])]
    out = []
    for i in range(workers):
        name = "classify" if workers == 1 else f"classify-{i}"
        env = role_env(child_env(settings, DISTILLERY_WEB_PORT=str(settings.web_port + i)),
                       roles, "classify")
        out.append(Child(name, argv, env, logs / f"{name}.log"))
    return out


def children(settings: Settings, tasks: list[TaskConfig], logs: Path,
             bootstrap_files: dict[str, Path] | None = None,
             classify_workers: int = 1, teacher_workers: int = 1,
             roles: SecureFiles | None = None, refine_workers: int = 1) -> list[Child]:
    """``classify_workers`` classify workers for all tasks, ``teacher_workers`` teacher
    workers per task (one group: they share the partitions, and one budget and verdict memory
    through ``<task>.teacher.ledger``), ``refine_workers`` refine workers per task that runs
    the cascade (one group on ``<task>.refine``), and a trainer worker per task (one trainer
    per task: a second one would only stand by, as the lock group on ``<task>.trainer.lock``
    lets one lead; see ``workers.trainer.leader``). With ``roles`` (``up --secure``) each
    connects as its own role of the secure broker."""
    if teacher_workers < 1 or refine_workers < 1:
        raise ValueError("at least one teacher worker and one refine worker per task")
    out = classify_children(settings, tasks, logs, classify_workers, roles)

    def env(role: str) -> dict[str, str]:
        return role_env(child_env(settings, DISTILLERY_METRICS_PORT="0"), roles, role)

    for task in tasks:
        for i in range(teacher_workers):
            name = f"teacher-{task.name}" + (f"-{i}" if teacher_workers > 1 else "")
            out.append(Child(name, ["worker", "teacher", "--task", task.name],
                             env("teacher"), logs / f"{name}.log"))
        for i in range(refine_workers if task.cascade else 0):  # tiers has "embed"
            name = f"refine-{task.name}" + (f"-{i}" if refine_workers > 1 else "")
            out.append(Child(name, ["worker", "refine", "--task", task.name],
                             env("refine"), logs / f"{name}.log"))
        trainer = ["worker", "trainer", "--task", task.name]
        if bootstrap_files and task.name in bootstrap_files:
            trainer += ["--bootstrap", str(bootstrap_files[task.name])]
        out.append(Child(f"trainer-{task.name}", trainer, env("trainer"),
                         logs / f"trainer-{task.name}.log"))
    return out


def prepare(settings: Settings, tasks: list[TaskConfig], secure: bool = False
            ) -> tuple[Settings, EmbeddedBroker | None]:
    """The broker up, the topics created (and on the secure broker, every role's ACLs)."""
    settings, broker = ensure_broker(settings, secure)
    create_topics(settings)
    if secure:
        from workers.runtime.secure import grant_roles

        grant_roles(settings, tasks)
    return settings, broker


def remove_topics(settings: Settings) -> bool:
    """Delete every topic and consumer group under ``settings.topic_prefix`` (which must not
    be empty: this is for the demo's and the benchmarks' own prefixes). True if it worked."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a topic prefix")
    try:
        admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=10000)
    except (KafkaError, OSError) as exc:
        log.warning("could not connect to delete the %s* topics: %s", prefix, exc)
        return False
    try:
        groups = [str(g["group_id"]) for g in admin.list_groups()
                  if str(g.get("group_id", "")).startswith(prefix)]
        if groups:
            admin.delete_groups(groups)
        topics = [t for t in admin.list_topics() if t.startswith(prefix)]
        if topics:
            admin.delete_topics(topics)
        log.info("deleted %d topics and %d consumer groups under %s", len(topics), len(groups),
                 prefix)
        return True
    except (KafkaError, OSError) as exc:
        log.warning("could not delete the %s* topics: %s", prefix, exc)
        return False
    finally:
        admin.close()
