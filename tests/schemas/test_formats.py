"""JSON beside Avro: every record round-trips as JSON, ``auto`` tells the two apart by the Avro
header, and a bad JSON record fails with the same reason as the same record in Avro."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from distillery.errors import SerializationError, ValidationError
from schemas import records as r
from schemas.serde import (
    NOT_AVRO,
    SINGLE_OBJECT_MAGIC,
    confluent_frame,
    decode,
    decode_any,
    encode,
    schema_for,
    wire_format,
)
from tests.schemas.test_schemas import samples


def _avro_ticket(fields: dict[str, Any]) -> bytes:
    """Avro bytes of a ticket written without pydantic (so they may break the contract)."""
    schema = schema_for("ticket")
    full = {"id": "x", "created_at": 0, "subject": "", "body": "", "channel": None,
            "customer_tier": None, "metadata": {}, **fields}
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    fastavro.schemaless_writer(buffer, schema.parsed, full)
    return buffer.getvalue()


@pytest.mark.parametrize("record", samples(), ids=lambda rec: rec.avro_name)
def test_every_record_round_trips_as_json(record: r.Record) -> None:
    data = encode(record, "json")
    assert wire_format(data) == "json"
    assert isinstance(json.loads(data), dict)
    assert decode(data, type(record)) == record
    assert decode(data, type(record), fmt="json") == record
    assert decode_any(data) == record  # the record type is told from the keys


def test_json_is_plain_json_any_client_reads() -> None:
    decision = next(s for s in samples() if isinstance(s, r.Decision))
    value = json.loads(encode(decision, "json").decode("utf-8"))
    assert value["id"] == "t1" and value["label"] == "refunds"
    assert value["decided_by"] == "student" and value["confidence"] == 0.98
    assert value["decided_at"].startswith("2026-01-02T03:04:05.678")


def test_auto_tells_avro_from_json_by_the_header() -> None:
    ticket = samples()[0]
    assert isinstance(ticket, r.Ticket)
    assert wire_format(encode(ticket)) == "avro"
    assert wire_format(confluent_frame(7, ticket)) == "avro"
    assert decode(encode(ticket), r.Ticket) == ticket
    assert decode(confluent_frame(7, ticket), r.Ticket,
                  confluent_ids={7: schema_for("ticket")}) == ticket


def test_the_issues_json_ticket_decodes() -> None:
    data = b'{"id": "json-1", "subject": "refund", "body": "I was charged twice"}'
    ticket = decode(data, r.Ticket)
    assert (ticket.id, ticket.subject, ticket.body) == ("json-1", "refund", "I was charged twice")
    assert ticket.created_at.tzinfo is not None


def test_a_format_refuses_the_other() -> None:
    ticket = samples()[0]
    with pytest.raises(SerializationError, match=NOT_AVRO):
        decode(encode(ticket, "json"), r.Ticket, fmt="avro")
    with pytest.raises(SerializationError, match="not JSON: the bytes start with an Avro header"):
        decode(encode(ticket), r.Ticket, fmt="json")


@pytest.mark.parametrize("data, reason", [
    (b"{bad", "neither Avro nor JSON"),
    (b"\xff\xfe garbage", "neither Avro nor JSON"),
    (b"[1, 2]", "JSON value is not an object"),
    (b'"a string"', "JSON value is not an object"),
    (b"", "empty message"),
])
def test_what_is_not_a_json_object_is_undecodable(data: bytes, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason):
        decode(data, r.Ticket)


@pytest.mark.parametrize("fields", [
    {"id": "b1", "subject": " ", "body": "\n"},  # blank text
    {"id": " ", "subject": "s", "body": "b"},  # blank id
    {"id": "b2", "subject": "s", "body": "x" * 50},  # over the cap
    {"id": "b3", "subject": "s", "body": "b", "metadata": {"k": "v", "n": "1"}},  # valid
])
def test_json_and_avro_give_the_same_verdict(fields: dict[str, Any]) -> None:
    results: list[str] = []
    for data in (_avro_ticket(fields), json.dumps(fields).encode()):
        try:
            results.append(repr(decode(data, r.Ticket, max_text_chars=20).model_dump(
                exclude={"created_at"})))
        except ValidationError as exc:
            results.append(f"invalid: {exc}")
    assert results[0] == results[1]


def test_json_only_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="body: Field required"):
        decode(b'{"id": "x", "subject": "s"}', r.Ticket)
    with pytest.raises(ValidationError, match="queue: Extra inputs are not permitted"):
        decode(b'{"id": "x", "body": "b", "queue": "billing"}', r.Ticket)
    with pytest.raises(ValidationError, match="metadata.n: Input should be a valid string"):
        decode(b'{"id": "x", "body": "b", "metadata": {"n": 1}}', r.Ticket)


def test_decode_any_refuses_a_json_object_that_is_no_record() -> None:
    with pytest.raises(SerializationError, match="no known record"):
        decode_any(b'{"hello": "world"}')


def test_unknown_wire_format_is_an_error() -> None:
    with pytest.raises(SerializationError, match="unknown wire format"):
        encode(samples()[0], "xml")  # type: ignore[arg-type]
