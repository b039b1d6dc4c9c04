"""The Python client: join the loop from your own service without building records or topics.

::

    from distillery.client import Client

    with Client() as client:  # settings from DISTILLERY_* (bootstrap, topic prefix, tasks)
        ticket_id = client.produce("tickets", {"subject": "refund", "body": "charged twice"})
        for decision in client.results("tickets", timeout_s=60):
            if decision.id == ticket_id:
                print(decision.label, decision.decided_by)
                break
        client.feedback("tickets", ticket_id, "refunds")

- ``produce(task, item)`` takes a record of the task's input type or a plain dict (validated
  by the same pydantic model the workers use; an ``id`` is generated when absent), writes it
  to the task's input topic keyed by its id — as JSON when the task's ``input_format`` is
  ``json``, else Avro — and returns the id.
- ``results(task)`` iterates the task's results topic as typed ``Decision`` records, Avro
  or JSON alike. Without a group it starts where the topic ended when this client first
  touched the task (so the decisions of what it produced are never missed),
  ``from_beginning=True`` from the start; with ``group="name"`` it resumes that consumer
  group and commits only what it has handed out (a caller that breaks out mid-batch finds
  the rest of the batch there next time). ``timeout_s`` ends the iteration after that many
  seconds without a decision. Decisions are at-least-once: ``dedupe=True`` hands out only the
  first decision of each id this iterator has seen (it remembers every id it handed out).
- ``feedback(task, id, label)`` writes the ground truth for an item to ``<task>.feedback``
  (the label must be one of the task's).

The module-level ``produce``, ``results`` and ``feedback`` use one client built from the
environment on first use (closed at exit). kafka-python is imported only when a client first
talks to Kafka, so ``import distillery`` stays light. Errors are ``DistilleryError``s:
``ConfigError`` for an unknown task or label, ``ValidationError`` for an invalid item,
``BrokerError`` when Kafka cannot be reached.
"""

from __future__ import annotations

import atexit
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from distillery.errors import BrokerError, ConfigError, DistilleryError, ValidationError
from distillery.settings import Settings, load_settings
from distillery.tasks import TaskConfig, load_tasks
from schemas.records import INPUT_TYPES, Decision, Feedback, InputRecord
from schemas.registry import frame, use_registry
from schemas.serde import decode, encode, validate

log = logging.getLogger(__name__)

__all__ = ["Client", "feedback", "produce", "results"]


class Client:
    """Produces items and feedback and reads decisions for the tasks of ``settings``."""

    def __init__(self, settings: Settings | None = None, *, client_id: str = "distillery-client"
                 ) -> None:
        self.settings = settings if settings is not None else load_settings()
        use_registry(self.settings)  # a Schema Registry, when the settings name one
        self.tasks: dict[str, TaskConfig] = load_tasks(self.settings)
        self.client_id = client_id
        self._producer: Any = None
        self._pending: list[Any] = []  # send futures not yet checked by flush
        self._starts: dict[str, dict[Any, int]] = {}  # task -> results partition -> offset

    # --- the three verbs ---------------------------------------------------------------
    def produce(self, task: str, item: InputRecord | Mapping[str, Any]) -> str:
        """Validate ``item``, send it to the task's input topic keyed by its id; its id."""
        config = self.task(task)
        record = self._input_record(config, item)
        value = encode(record, "json" if config.input_format == "json" else "avro")
        self._mark_start(config)
        self._send(config.input_topic, record.id, value)
        return record.id

    def results(self, task: str, *, from_beginning: bool = False, group: str | None = None,
                timeout_s: float | None = None, dedupe: bool = False) -> Iterator[Decision]:
        """The task's decisions as they arrive (see the module docstring for where it starts)."""
        config = self.task(task)
        if group is None and not from_beginning:
            self._mark_start(config)
        self.flush()  # what this client produced is on its way before we wait for answers
        return self._iter_results(config, from_beginning, group, timeout_s, dedupe)

    def feedback(self, task: str, id: str, label: str, *, source: str = "human") -> None:
        """Send the true label of item ``id`` to ``<task>.feedback``."""
        config = self.task(task)
        if label not in config.label_names:
            raise ConfigError(f"{label!r} is not a label of task {config.name}; "
                              f"its labels: {', '.join(config.label_names)}")
        record = validate(Feedback, {"id": id, "task": config.name, "label": label,
                                     "source": source})
        self._send(config.feedback_topic, record.id, encode(record))

    # --- lifecycle ---------------------------------------------------------------------
    def flush(self) -> None:
        """Wait until everything sent so far is acknowledged by the broker; a send the broker
        refused (no ACL to write the topic, say) is a ``BrokerError`` here, not lost quietly."""
        if self._producer is None:
            return
        self._producer.flush()
        pending, self._pending = self._pending, []
        failed = [f for f in pending if f.failed()]
        if failed:
            exc = failed[0].exception
            raise BrokerError(f"{len(failed)} of {len(pending)} sends refused: {exc}",
                              retriable=getattr(exc, "retriable", False))

    def close(self) -> None:
        """Flush and close the producer (the client can be used again afterwards)."""
        if self._producer is not None:
            try:
                self.flush()
            finally:
                producer, self._producer = self._producer, None
                if producer is not None:
                    producer.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- helpers -----------------------------------------------------------------------
    def task(self, name: str) -> TaskConfig:
        """A configured task by name; an unknown one is a ``ConfigError``."""
        try:
            return self.tasks[name]
        except KeyError:
            raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(self.tasks))}"
                              ) from None

    def topic(self, name: str) -> str:
        """A catalogue topic name with this deployment's prefix."""
        return self.settings.topic(name)

    def _input_record(self, config: TaskConfig, item: InputRecord | Mapping[str, Any]
                      ) -> InputRecord:
        cls = INPUT_TYPES[config.schema_name]
        if isinstance(item, InputRecord):
            if not isinstance(item, cls):
                raise ValidationError(f"task {config.name} takes {cls.avro_name} records, "
                                      f"not {item.avro_name}")
            data: dict[str, Any] = item.model_dump()
        elif isinstance(item, Mapping):
            data = dict(item)
            data.setdefault("id", uuid.uuid4().hex)
        else:
            raise ValidationError(f"an item is a {cls.__name__} or a dict, not "
                                  f"{type(item).__name__}")
        return validate(cls, data, max_text_chars=self.settings.max_text_chars)

    def _kafka(self) -> dict[str, Any]:
        return {"client_id": self.client_id, **self.settings.kafka_python_kwargs()}

    def _send(self, topic: str, key: str, value: bytes) -> None:
        from kafka.errors import KafkaError

        if self._producer is None:
            from kafka import KafkaProducer

            try:
                self._producer = KafkaProducer(
                    linger_ms=5, client_id=self.client_id,
                    **self.settings.kafka_python_producer_kwargs())
            except KafkaError as exc:
                raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: "
                                  f"{exc}") from exc
        try:
            self._pending.append(
                self._producer.send(self.topic(topic), key=key.encode("utf-8"),
                                    value=frame(self.topic(topic), value)))
        except KafkaError as exc:
            raise BrokerError(f"cannot send to {self.topic(topic)}: {exc}") from exc

    def _consumer(self, group: str | None) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            # never auto-commit: that would commit what was polled, not what was handed out
            return KafkaConsumer(group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", **self._kafka())
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: "
                              f"{exc}") from exc

    def _partitions(self, consumer: Any, topic: str) -> list[Any]:
        from kafka import TopicPartition

        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise BrokerError(f"topic {topic} does not exist (distillery topics create)",
                              retriable=False)
        return [TopicPartition(topic, p) for p in sorted(partitions)]

    def _mark_start(self, config: TaskConfig) -> None:
        """Remember where the results topic ends the first time this client touches a task."""
        if config.name in self._starts:
            return
        consumer = self._consumer(None)
        try:
            tps = self._partitions(consumer, self.topic(config.results_topic))
            self._starts[config.name] = dict(consumer.end_offsets(tps))
        finally:
            consumer.close()

    def _iter_results(self, config: TaskConfig, from_beginning: bool, group: str | None,
                      timeout_s: float | None, dedupe: bool) -> Iterator[Decision]:
        topic = self.topic(config.results_topic)
        consumer = self._consumer(group)
        handed: dict[Any, int] = {}  # partition -> the offset after the last message handed out
        committed: dict[Any, int] = {}
        seen: set[str] = set()

        def commit() -> None:
            """Commit what was handed out since the last commit (with a group only)."""
            from kafka.errors import KafkaError
            from kafka.structs import OffsetAndMetadata

            todo = {tp: off for tp, off in handed.items() if committed.get(tp) != off}
            if group is not None and todo:
                try:
                    consumer.commit({tp: OffsetAndMetadata(off, "", -1)
                                     for tp, off in todo.items()})
                except KafkaError as exc:  # a rebalance, the broker away: try again
                    raise BrokerError(f"committing {group}'s position failed: {exc}",
                                      retriable=True) from exc
                committed.update(todo)

        try:
            if group is not None:
                consumer.subscribe([topic])
            else:
                tps = self._partitions(consumer, topic)
                consumer.assign(tps)
                if from_beginning:
                    consumer.seek_to_beginning(*tps)
                else:
                    for tp, offset in self._starts[config.name].items():
                        consumer.seek(tp, offset)
            last = time.monotonic()
            while True:
                commit()
                batch = consumer.poll(timeout_ms=200)
                if not batch:
                    if timeout_s is not None and time.monotonic() - last > timeout_s:
                        return
                    continue
                last = time.monotonic()
                for tp, messages in batch.items():
                    for message in messages:
                        handed[tp] = message.offset + 1  # handed out once yielded (or skipped)
                        try:
                            decision = decode(message.value or b"", Decision)
                        except DistilleryError as exc:
                            log.warning("skipping an undecodable decision at %s[%s]@%s: %s",
                                        message.topic, message.partition, message.offset, exc)
                            continue
                        if dedupe:
                            if decision.id in seen:
                                continue
                            seen.add(decision.id)
                        yield decision
        finally:
            try:
                commit()  # a caller that broke out: up to the decision it holds, not beyond
            finally:
                consumer.close(autocommit=False)


_default: Client | None = None


def default_client() -> Client:
    """The module's client, built from the environment on first use and closed at exit."""
    global _default
    if _default is None:
        _default = Client()
        atexit.register(_default.close)
    return _default


def produce(task: str, item: InputRecord | Mapping[str, Any]) -> str:
    """``Client.produce`` on the module's client."""
    return default_client().produce(task, item)


def results(task: str, *, from_beginning: bool = False, group: str | None = None,
            timeout_s: float | None = None, dedupe: bool = False) -> Iterator[Decision]:
    """``Client.results`` on the module's client."""
    return default_client().results(task, from_beginning=from_beginning, group=group,
                                    timeout_s=timeout_s, dedupe=dedupe)


def feedback(task: str, id: str, label: str, *, source: str = "human") -> None:
    """``Client.feedback`` on the module's client."""
    default_client().feedback(task, id, label, source=source)
