"""Every schema round-trips; framing, evolution and validation follow the contracts."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from distillery.errors import SerializationError, ValidationError
from schemas import records as r
from schemas.serde import (
    SINGLE_OBJECT_MAGIC,
    confluent_frame,
    decode,
    decode_any,
    encode,
    schema_for,
    schema_versions,
    validate,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def samples() -> list[r.Record]:
    return [
        r.Ticket(id="t1", created_at=NOW, subject="Refund", body="Charged twice",
                 channel="email", customer_tier="gold", metadata={"oracle_label": "refunds"}),
        r.ModerationItem(id="m1", created_at=NOW, text="buy cheap pills", surface="comment"),
        r.TextItem(id="x1", created_at=NOW, text="what is my balance"),
        r.Decision(id="t1", task="tickets", label="refunds", confidence=0.98,
                   decided_by="student", model_version="v0001", reason="confident",
                   latency_ms=1.5, cost=0.0, decided_at=NOW),
        r.TeacherRequest(id="t1", task="tickets", text="Refund\nCharged twice",
                         student_label="billing", student_confidence=0.4, model_version="v0001",
                         reason="low_confidence", requested_at=NOW),
        r.TeacherVerdict(id="t1", task="tickets", text="Refund", label="refunds",
                         teacher_id="gpt-4o-mini", student_label="billing",
                         student_confidence=0.4, reason="low_confidence", latency_ms=800.0,
                         cost=0.0002, tokens_in=120, tokens_out=8, decided_at=NOW),
        r.Feedback(id="t1", task="tickets", label="refunds", source="agent", observed_at=NOW),
        r.ModelAnnouncement(task="tickets", version="v0002", uri="file:///r/tickets/v0002",
                            sha256="a" * 64, labels=["billing", "refunds"],
                            metrics={"accuracy": 0.9}, action="promote", created_at=NOW),
        r.DeadLetter(task="tickets", source_topic="tickets", partition=3, offset=42,
                     key=b"t9", value=b"\x00garbage", error_kind="undecodable",
                     message="not Avro", at=NOW, value_size=9, value_sha256="b" * 64),
        r.Escalation(id="m1", task="moderation", text="i want to end it", student_label="ok",
                     student_confidence=0.3, request_reason="critical", kind="refused",
                     message="the teacher refused", teacher_id="openai:x", at=NOW),
    ]


@pytest.mark.parametrize("record", samples(), ids=lambda rec: rec.avro_name)
def test_every_schema_round_trips(record: r.Record) -> None:
    data = encode(record)
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert decode(data, type(record)) == record
    assert decode_any(data) == record


def test_every_record_type_has_a_schema_and_a_sample() -> None:
    assert {rec.avro_name for rec in samples()} == set(r.RECORD_TYPES)
    for name in r.RECORD_TYPES:
        assert schema_for(name).version == "current"


def test_single_object_fingerprint_is_the_standard_crc64() -> None:
    # The Avro specification's test vector: CRC-64-AVRO of the schema "null" is
    # 7195948357588979594, written little-endian in single-object encoding.
    assert fingerprint('"null"', "CRC-64-AVRO") == (7195948357588979594).to_bytes(8, "little").hex()
    for schema in schema_versions():
        canonical = to_parsing_canonical_form(schema.parsed)
        assert schema.fingerprint == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        assert len(schema.fingerprint) == 8


def test_confluent_wire_format_is_readable_with_schema_ids() -> None:
    ticket = samples()[0]
    framed = confluent_frame(17, ticket)
    assert framed[:5] == b"\x00" + struct.pack(">I", 17)
    assert decode(framed, r.Ticket, confluent_ids={17: schema_for("ticket")}) == ticket
    with pytest.raises(SerializationError, match="schema id 17"):
        decode(framed, r.Ticket)


def test_a_ticket_written_with_schema_v1_decodes_with_the_current_schema() -> None:
    old = next(s for s in schema_versions() if s.name == "ticket" and s.version == "v1")
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC + old.fingerprint)
    fastavro.schemaless_writer(
        buffer, old.parsed,
        {"id": "old-1", "created_at": NOW, "subject": "s", "body": "b", "channel": None,
         "metadata": {}},
    )
    ticket = decode(buffer.getvalue(), r.Ticket)
    assert ticket.id == "old-1" and ticket.customer_tier is None


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty message"),
        (b"{\"id\": 1", "neither Avro nor JSON"),  # JSON objects decode: see test_formats.py
        (b"\xc3\x01\x00\x01", "truncated"),
        (b"\xc3\x01" + b"\x01" * 8 + b"abc", "unknown schema fingerprint"),
    ],
)
def test_undecodable_bytes_raise_serialization_errors(data: bytes, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason):
        decode(data, r.Ticket)


def test_corrupt_body_and_wrong_type_are_refused() -> None:
    good = encode(samples()[0])
    with pytest.raises(SerializationError):
        decode(good[:14], r.Ticket)
    with pytest.raises(SerializationError, match="expected a decision record"):
        decode(good, r.Decision)


@pytest.mark.parametrize(
    "cls, data, reason",
    [
        (r.Ticket, {"id": "", "body": "x"}, "id: must not be empty"),
        (r.Ticket, {"id": "a", "subject": " ", "body": "\n"}, "text is empty"),
        (r.TextItem, {"id": "a", "text": "   "}, "text is empty"),
        (r.TextItem, {"id": "a", "text": "x" * 11}, "over the cap of 10"),
        (r.TextItem, {"id": "a", "text": "x", "created_at": "2026-01-01T00:00:00"},
         "timezone"),
        (r.Decision, {"id": "a", "task": "t", "label": "l", "confidence": 0.5,
                      "decided_by": "robot", "reason": "confident"}, "decided_by"),
    ],
)
def test_validation_gives_one_readable_reason(cls: type, data: dict, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        validate(cls, data, max_text_chars=10)


def test_an_invalid_record_on_the_wire_is_refused_on_decode() -> None:
    long_text = r.TextItem(id="a", text="y" * 50, created_at=NOW)
    with pytest.raises(ValidationError, match="over the cap"):
        decode(encode(long_text), r.TextItem, max_text_chars=20)
