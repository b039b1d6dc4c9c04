"""A real Schema Registry (the embedded Apicurio Registry) with Confluent's own client.

A producer written with ``confluent-kafka``'s ``AvroSerializer`` and ``SchemaRegistryClient``
(not distillery's serde) writes tickets; the classify, refine and teacher workers, pointed
at the registry, decide them; a consumer with ``confluent-kafka``'s ``AvroDeserializer``
reads the decisions. An incompatible schema change is refused by the registry while the
workers keep running. The embedded registry needs Java and Maven, as the embedded broker
does: these tests run wherever the broker's do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError as ConfluentRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from distillery.errors import SerializationError
from distillery.settings import Settings, load_settings
from distillery.tasks import TICKETS
from schemas.records import Decision, Ticket
from schemas.registry import SchemaRegistry, SchemaRegistryError, frame, use_registry
from schemas.serde import decode, encode
from tests.streams.kit import (
    REPO,
    serve_tickets_version,
    start_classify,
    start_worker,
    stop,
)
from workers.runtime.procs import free_port
from workers.runtime.schema_registry import EmbeddedSchemaRegistry
from workers.sim.synth import generate, labels_of

AVRO = REPO / "schemas" / "avro"


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = load_settings(state_dir=tmp_path_factory.mktemp("schema-registry"),
                             schema_registry_port=free_port())
    embedded = EmbeddedSchemaRegistry(settings)
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()
        use_registry(settings)  # none: later tests in this process use no registry


def _ticket_dict(ticket: Ticket) -> dict[str, Any]:
    return ticket.model_dump()


def test_records_round_trip_between_confluent_serializers_and_distillery(
        registry_url: str) -> None:
    use_registry(load_settings(schema_registry_url=registry_url))
    client = SchemaRegistryClient({"url": registry_url})
    topic = f"rt{time.time_ns()}.tickets"
    ctx = SerializationContext(topic, MessageField.VALUE)
    ticket = Ticket(id="T-1", created_at=datetime(2026, 12, 6, tzinfo=UTC), subject="refund",
                    body="I was charged twice", metadata={"k": "v"})

    # Confluent's serializer writes, distillery reads: today's schema and an older one
    current = AvroSerializer(client, (AVRO / "ticket.avsc").read_text())(
        _ticket_dict(ticket), ctx)
    assert current[:1] == b"\x00" and decode(current, Ticket) == ticket
    older = AvroSerializer(client, (AVRO / "ticket.v1.avsc").read_text(),
                           conf={"auto.register.schemas": True})
    v1 = json.loads((AVRO / "ticket.v1.avsc").read_text())
    fields = {f["name"] for f in v1["fields"]}
    old_bytes = older({k: v for k, v in _ticket_dict(ticket).items() if k in fields},
                      SerializationContext(f"{topic}.v1", MessageField.VALUE))
    assert decode(old_bytes, Ticket).id == "T-1"  # resolved to the current schema

    # distillery writes (framed for the registry), Confluent's deserializer reads
    decision = Decision(id="T-1", task="tickets", label="billing", confidence=0.97,
                        decided_by="student", model_version="v0001", reason="confident",
                        latency_ms=1.5, cost=0.0, decided_at=datetime(2026, 12, 6, tzinfo=UTC))
    framed = frame(f"{topic}.routed", encode(decision))
    assert framed[:1] == b"\x00" and framed[5:] == encode(decision)[10:]
    read = AvroDeserializer(client)(framed, SerializationContext(f"{topic}.routed",
                                                                 MessageField.VALUE))
    assert read is not None and read["label"] == "billing" and read["id"] == "T-1"
    registered = client.get_latest_version(f"{topic}.routed-value")
    assert int.from_bytes(framed[1:5], "big") == registered.schema_id
    assert decode(framed, Decision) == decision

    # bytes naming an id the registry does not hold, or a record distillery does not read
    with pytest.raises(SerializationError, match="not in the Schema Registry"):
        decode(b"\x00\x00\x0f\x42\x40" + b"\x02", Ticket)
    other = json.dumps({"type": "record", "name": "Other", "fields": [
        {"name": "a", "type": "string"}]})
    other_bytes = AvroSerializer(client, other)({"a": "x"}, ctx)
    with pytest.raises(SerializationError, match="does not read"):
        decode(other_bytes, Ticket)


def test_an_unreachable_registry_is_a_retriable_error_after_its_retries() -> None:
    client = SchemaRegistry(f"http://127.0.0.1:{free_port()}", retry_s=1.0)
    started = time.monotonic()
    with pytest.raises(SchemaRegistryError, match="cannot be reached") as caught:
        client.register("any.topic-value", '{"type": "string"}')
    assert caught.value.retriable and time.monotonic() - started >= 0.5


def _consume(settings: Settings, topic: str, client: SchemaRegistryClient, want: set[str],
             timeout_s: float) -> dict[str, dict[str, Any]]:
    """Decisions read with Confluent's consumer and AvroDeserializer, by id."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"confluent-{time.time_ns()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    deserialize = AvroDeserializer(client)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while not want <= set(found) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            value = deserialize(message.value(),
                                SerializationContext(topic, MessageField.VALUE))
            found[value["id"]] = value
    finally:
        consumer.close()
    return found


@pytest.mark.kafka
@pytest.mark.slow
def test_confluent_producer_to_workers_to_confluent_consumer(
        kafka_settings: Settings, registry_url: str, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(update={"student_buckets": 1 << 16})
    items = generate("tickets", 560, seed=9)
    texts = [item.text_of(TICKETS.text_fields) for item in items]
    serve_tickets_version(settings, texts[:500], labels_of(items[:500]))

    env = {"DISTILLERY_SCHEMA_REGISTRY_URL": registry_url}
    workers = [start_classify(settings, tmp_path / "classify.log", **env),
               start_worker(settings, tmp_path / "refine.log", "refine", **env),
               start_worker(settings, tmp_path / "teacher.log", "teacher",
                       DISTILLERY_TEACHER_KIND="oracle", **env)]
    client = SchemaRegistryClient({"url": registry_url})
    input_topic = settings.topic("tickets")
    serialize = AvroSerializer(client, (AVRO / "ticket.avsc").read_text())
    try:
        def produce(batch: list[Ticket]) -> None:
            producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
            for item in batch:
                producer.produce(input_topic, key=item.id, value=serialize(
                    _ticket_dict(item), SerializationContext(input_topic, MessageField.VALUE)))
            assert producer.flush(30) == 0

        first = [i for i in items[500:530] if isinstance(i, Ticket)]
        produce(first)
        routed = settings.topic("tickets.routed")
        decided = _consume(settings, routed, client, {i.id for i in first}, 180)
        assert {i.id for i in first} <= set(decided), "every ticket decided"
        by = {d["decided_by"] for d in decided.values()}
        # the teacher's: it read requests the refine worker framed for the registry
        assert by == {"student", "teacher"}
        subjects = set(client.get_subjects())
        assert {f"{input_topic}-value", f"{routed}-value",
                f"{settings.topic('tickets.teacher')}-value"} <= subjects

        # an incompatible change of the input's schema is refused; the workers go on
        client.set_compatibility(f"{input_topic}-value", "BACKWARD")
        ticket = json.loads((AVRO / "ticket.avsc").read_text())
        ticket["fields"].append({"name": "priority", "type": "int"})  # required, no default
        with pytest.raises(ConfluentRegistryError) as refused:
            client.register_schema(f"{input_topic}-value", Schema(json.dumps(ticket), "AVRO"))
        assert refused.value.http_status_code == 409
        second = [i for i in items[530:] if isinstance(i, Ticket)]
        produce(second)
        later = _consume(settings, routed, client, {i.id for i in second}, 180)
        assert {i.id for i in second} <= set(later)
        assert all(w.poll() is None for w in workers), "every worker still running"
    finally:
        for w in workers:
            stop(w)
