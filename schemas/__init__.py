"""The contracts: Avro schemas, the pydantic models that mirror them, and the serde
(Avro with standard framing, and JSON)."""

from schemas.records import (
    INPUT_TYPES,
    RECORD_TYPES,
    DeadLetter,
    Decision,
    Feedback,
    InputRecord,
    ModelAnnouncement,
    ModerationItem,
    Record,
    TeacherRequest,
    TeacherVerdict,
    TextItem,
    Ticket,
    record_type,
)
from schemas.serde import decode, decode_any, encode, validate, wire_format

__all__ = [
    "INPUT_TYPES",
    "RECORD_TYPES",
    "Decision",
    "DeadLetter",
    "Feedback",
    "InputRecord",
    "ModelAnnouncement",
    "ModerationItem",
    "Record",
    "TeacherRequest",
    "TeacherVerdict",
    "TextItem",
    "Ticket",
    "decode",
    "decode_any",
    "encode",
    "record_type",
    "validate",
    "wire_format",
]
