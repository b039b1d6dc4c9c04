"""The topic catalogue: every topic distillery uses, its schema, partitions and config.

Names are those of docs/reference/topics.md, after ``Settings.topic_prefix``. Every per-task
topic has the same partition count so that an id's event, teacher request, verdict and
decision share a partition number (except ``<task>.trainer.lock``, one partition that
holds no records).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from distillery.errors import BrokerError, ConfigError
from distillery.settings import Settings
from distillery.tasks import TaskConfig, load_tasks

log = logging.getLogger(__name__)

MODELS_TOPIC = "models"
DEADLETTER_TOPIC = "deadletter"


def escalations_topic(task: TaskConfig) -> str:
    """``<task>.escalations``: items a human must review (a teacher refusal on a critical item)."""
    return f"{task.name}.escalations"


def teacher_ledger_topic(task: TaskConfig) -> str:
    """``<task>.teacher.ledger``: the teacher workers' shared outcomes and spend (JSON, keyed by
    memo key; compacted, and deleted after the teacher topic's retention). See
    ``workers.teacher.ledger``."""
    return f"{task.name}.teacher.ledger"


def trainer_lock_topic(task: str) -> str:
    """``<task>.trainer.lock``: one partition, never written; the trainers of a task elect
    their leader by joining one consumer group on it (``workers.trainer.leader``)."""
    return f"{task}.trainer.lock"


@dataclass(frozen=True)
class TopicSpec:
    name: str  # full name, prefix included
    schema: str  # record schema name (see schemas.RECORD_TYPES)
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    task: str | None = None


def catalogue(settings: Settings, tasks: dict[str, TaskConfig] | None = None) -> list[TopicSpec]:
    """Every topic of every configured task, plus ``models`` and ``deadletter``."""
    tasks = tasks if tasks is not None else load_tasks(settings)
    n = settings.topic_partitions
    retention = {"retention.ms": str(settings.topic_retention_ms)}
    specs: list[TopicSpec] = []
    for task in tasks.values():
        input_schema = {"ticket": "ticket", "moderation": "moderation_item"}.get(
            task.schema_name, "text_item"
        )
        for name, schema in (
            (task.input_topic, input_schema),
            (task.results_topic, "decision"),
            (task.teacher_topic, "teacher_request"),
            (task.verdicts_topic, "teacher_verdict"),
            (task.feedback_topic, "feedback"),
            (escalations_topic(task), "escalation"),
        ):
            specs.append(TopicSpec(settings.topic(name), schema, n, dict(retention), task.name))
        specs.append(TopicSpec(settings.topic(teacher_ledger_topic(task)), "teacher_ledger", n,
                               {"cleanup.policy": "compact,delete", **retention}, task.name))
        if task.cascade:  # tier 1 → tier 2: what the n-gram student leaves to the embeddings
            specs.append(TopicSpec(settings.topic(task.refine_topic), "teacher_request", n,
                                   dict(retention), task.name))
        # one partition: its holder in the trainer-lock group is the task's one trainer
        specs.append(TopicSpec(settings.topic(trainer_lock_topic(task.name)), "raw", 1, {},
                               task.name))
    specs.append(
        TopicSpec(settings.topic(MODELS_TOPIC), "model_announcement", 1,
                  {"cleanup.policy": "compact"})
    )
    specs.append(TopicSpec(settings.topic(DEADLETTER_TOPIC), "dead_letter", n, dict(retention)))
    return specs


def spec_for(settings: Settings, topic: str) -> TopicSpec | None:
    """The catalogue entry of a full topic name, or None for a topic it does not know."""
    for spec in catalogue(settings):
        if spec.name == topic:
            return spec
    return None


def admin_client(settings: Settings) -> Any:
    """A kafka-python admin client, or a ``BrokerError`` that says why there is none.

    A refused SASL login looks like an unreachable broker to kafka-python (it cannot
    bootstrap); with SASL settings the error says which user tried.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(client_id="distillery-admin", **settings.kafka_python_kwargs())
    except (KafkaError, OSError) as exc:
        hint = ""
        if settings.kafka_sasl_mechanism:
            hint = (f" as {settings.kafka_sasl_username!r} over "
                    f"{settings.kafka_security_protocol}: check the user and password, and "
                    "the CA file")
        raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}{hint} "
                          f"({type(exc).__name__})") from exc


def replication_for(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the topics created on a cluster of
    ``brokers``: the settings', else 3 replicas (every broker of a smaller cluster) of which a
    write must reach all but one before it is acked. With ``acks=all`` an acked record is on
    at least ``min.insync`` brokers: 3/2 survives the loss of any one broker (and a second
    stops writes rather than lose acked ones); the embedded broker (1/1) survives a restart
    of its process, not the loss of its disk.

    >>> [replication_for(Settings(), n) for n in (1, 2, 3, 5)]
    [(1, 1), (2, 1), (3, 2), (3, 2)]
    """
    replication = settings.topic_replication or min(3, brokers)
    min_insync = settings.topic_min_insync_replicas or max(1, replication - 1)
    if replication > brokers:
        raise ConfigError(f"DISTILLERY_TOPIC_REPLICATION is {replication}, but the cluster has "
                          f"{brokers} broker(s)")
    if min_insync > replication:
        raise ConfigError(f"DISTILLERY_TOPIC_MIN_INSYNC_REPLICAS ({min_insync}) is more than "
                          f"the replication factor ({replication}): no write could be acked")
    return replication, min_insync


def create_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the catalogue's topics that do not exist yet; returns the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = specs if specs is not None else catalogue(settings)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            brokers = len(admin.describe_cluster().get("brokers") or []) or 1
            replication, min_insync = replication_for(settings, brokers)
        for spec in missing:
            topic = NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication,
                topic_configs={"min.insync.replicas": str(min_insync), **spec.config},
            )
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race: that is fine
        log.info("topics: %d created, %d already there", len(created), len(specs) - len(created))
        return created
    finally:
        admin.close()


def describe_topics(settings: Settings, names: list[str]) -> list[dict[str, object]]:
    """Partition count and config of existing topics (for ``topics describe``)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = admin_client(settings)
    try:
        meta = admin.describe_topics(names)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
        by_topic = configs.get("topic", {}) if isinstance(configs, dict) else {}
        return [
            {
                "topic": topic["name"],
                "partitions": len(topic["partitions"]),
                "error_code": topic.get("error_code", 0),
                "config": {
                    key: entry.get("value")
                    for key, entry in by_topic.get(topic["name"], {}).items()
                    if key in ("cleanup.policy", "retention.ms")
                },
            }
            for topic in meta
        ]
    finally:
        admin.close()


def list_topics(settings: Settings) -> list[str]:
    admin = admin_client(settings)
    try:
        return sorted(t for t in admin.list_topics() if t.startswith(settings.topic_prefix))
    finally:
        admin.close()


async def wait_for_topics(settings: Settings, names: list[str], *,
                          timeout_s: float | None = None, poll_s: float = 0.5) -> dict[str, int]:
    """Wait until every topic of ``names`` is in the cluster's metadata with a leader for each
    partition; returns each topic's partition count.

    A consumer that subscribes before its topic is visible gets no partitions and sits idle
    until its next metadata refresh (5 minutes by default): every worker calls this
    first. The metadata request lists all topics, so it never auto-creates one. Raises
    ``BrokerError`` (the process exits and its supervisor restarts it) after ``timeout_s``
    (``settings.topic_wait_s``).
    """
    import asyncio

    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    timeout_s = settings.topic_wait_s if timeout_s is None else timeout_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    next_log = loop.time() + 5.0
    client = AIOKafkaClient(client_id="distillery-topic-wait", **settings.aiokafka_kwargs())
    missing: list[str] = list(names)
    try:
        while True:
            try:
                if not client.cluster.brokers():
                    await client.bootstrap()
                cluster = await client.fetch_all_metadata()
            except KafkaError as exc:  # broker not answering yet: keep waiting
                log.info("waiting for the cluster metadata: %s", exc)
                cluster = None
            if cluster is not None:
                counts: dict[str, int] = {}
                missing = []
                for name in names:
                    every = cluster.partitions_for_topic(name) or set()
                    led = cluster.available_partitions_for_topic(name) or set()
                    if every and len(led) == len(every):
                        counts[name] = len(every)
                    else:
                        missing.append(name)
                if not missing:
                    return counts
            now = loop.time()
            if now >= deadline:
                raise BrokerError(f"topics not in the cluster metadata after {timeout_s:.0f}s: "
                                  f"{', '.join(missing)} (run `distillery topics create`)")
            if now >= next_log:
                log.info("waiting for topics to appear in the cluster metadata: %s",
                         ", ".join(missing))
                next_log = now + 5.0
            await asyncio.sleep(poll_s)
    finally:
        await client.close()


def wait_for_topics_sync(settings: Settings, names: list[str],
                         timeout_s: float | None = None) -> dict[str, int]:
    """``wait_for_topics`` for code that has no event loop yet (the faust worker's start)."""
    import asyncio

    return asyncio.run(wait_for_topics(settings, names, timeout_s=timeout_s))
