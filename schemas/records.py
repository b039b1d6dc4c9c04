"""Pydantic models that mirror the Avro schemas in ``schemas/avro``.

Validation follows the contracts: ids non-empty, text non-empty after stripping and at most
``max_text_chars`` long (pass ``context={"max_text_chars": n}`` to ``model_validate``;
default ``DEFAULT_MAX_TEXT_CHARS``), timestamps timezone-aware. Every field that travels on
to another topic is bounded, so that no record accepted here can make an output the broker
refuses: ids and short fields at ``MAX_ID_CHARS``, metadata at ``MAX_METADATA_ENTRIES``
entries and ``MAX_METADATA_BYTES`` (keys and values, UTF-8). A value over a bound fails with
"over the cap" in its reason (an ``oversized`` dead letter).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_MAX_TEXT_CHARS = 20_000
MAX_ID_CHARS = 256
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 16_384

DecidedBy = Literal["student", "teacher", "fallback"]
DecisionReason = Literal[
    "confident", "low_confidence", "critical", "cold_start", "teacher_unavailable"
]
RequestReason = Literal["low_confidence", "critical", "cold_start", "audit"]
AnnouncementAction = Literal["promote", "rollback"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_millis(at: datetime) -> datetime:
    """``at`` truncated to the millisecond: Avro's timestamp-millis keeps no more, so a
    record's times survive a round trip exactly."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _cap(info: ValidationInfo) -> int:
    context = info.context or {}
    return int(context.get("max_text_chars", DEFAULT_MAX_TEXT_CHARS))


def _check_text(value: str, info: ValidationInfo, *, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise ValueError("text is empty")
    cap = _cap(info)
    if len(value) > cap:
        raise ValueError(f"text is {len(value)} characters, over the cap of {cap}")
    return value


def _short(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_ID_CHARS:
        raise ValueError(f"is {len(value)} characters, over the cap of {MAX_ID_CHARS}")
    return value


class Record(BaseModel):
    """Base of every record: frozen, strict about unknown fields."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True,
        ser_json_bytes="base64", val_json_bytes="base64",
    )
    avro_name: ClassVar[str]

    @field_validator("id", "task", check_fields=False)
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return _short(value)

    @field_validator("channel", "customer_tier", "surface", "model_version", "teacher_id",
                     "source", "student_label", "tier2_label", "tier2_version",
                     check_fields=False)
    @classmethod
    def _bounded(cls, value: str | None) -> str | None:
        return _short(value)

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_ENTRIES:
            raise ValueError(f"metadata has {len(value)} entries, over the cap of "
                             f"{MAX_METADATA_ENTRIES}")
        size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in value.items())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes, over the cap of {MAX_METADATA_BYTES}")
        return value

    @field_validator(
        "created_at", "decided_at", "requested_at", "observed_at", "at", check_fields=False
    )
    @classmethod
    def _millis(cls, value: datetime) -> datetime:
        return to_millis(value)


class InputRecord(Record):
    """An event on an input topic; ``text`` is what the student and teacher read."""

    id: str
    created_at: AwareDatetime = Field(default_factory=utcnow)
    metadata: dict[str, str] = Field(default_factory=dict)

    def text_of(self, fields: list[str]) -> str:
        parts = [str(getattr(self, name) or "") for name in fields]
        return "\n".join(p for p in parts if p.strip())


class Ticket(InputRecord):
    avro_name: ClassVar[str] = "ticket"
    subject: str = ""
    body: str
    channel: str | None = None
    customer_tier: str | None = None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info, allow_empty=True)

    @field_validator("body")
    @classmethod
    def _body(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info, allow_empty=True)

    @model_validator(mode="after")
    def _some_text(self) -> Ticket:
        if not (self.subject.strip() or self.body.strip()):
            raise ValueError("text is empty (subject and body are both blank)")
        return self


class ModerationItem(InputRecord):
    avro_name: ClassVar[str] = "moderation_item"
    text: str
    surface: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)


class TextItem(InputRecord):
    avro_name: ClassVar[str] = "text_item"
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)


class Decision(Record):
    avro_name: ClassVar[str] = "decision"
    id: str
    task: str
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    decided_by: DecidedBy
    model_version: str | None = None
    teacher_id: str | None = None
    reason: DecisionReason
    latency_ms: float = Field(0.0, ge=0.0)
    cost: float = Field(0.0, ge=0.0)
    decided_at: AwareDatetime = Field(default_factory=utcnow)


class TeacherRequest(Record):
    avro_name: ClassVar[str] = "teacher_request"
    id: str
    task: str
    text: str
    metadata: dict[str, str] = Field(default_factory=dict)
    student_label: str | None = None
    student_confidence: float | None = None
    model_version: str | None = None
    reason: RequestReason
    requested_at: AwareDatetime = Field(default_factory=utcnow)
    # tier 2's scores, on a request that went through the cascade's refine stage (the
    # student_* fields stay tier 1's); written by schema v2, absent (None) in v1 records
    tier2_label: str | None = None
    tier2_confidence: float | None = None
    tier2_version: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)


class TeacherVerdict(Record):
    avro_name: ClassVar[str] = "teacher_verdict"
    id: str
    task: str
    text: str
    label: str
    teacher_id: str
    student_label: str | None = None
    student_confidence: float | None = None
    reason: RequestReason
    latency_ms: float = Field(0.0, ge=0.0)
    cost: float = Field(0.0, ge=0.0)
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    decided_at: AwareDatetime = Field(default_factory=utcnow)
    # the request's tier2_version (schema v2): set on the refine worker's audits, so the
    # trainer weighs them as tier-2 audits; None in v1 records
    tier2_version: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info, allow_empty=True)


class Feedback(Record):
    avro_name: ClassVar[str] = "feedback"
    id: str
    task: str
    label: str = Field(min_length=1)
    source: str = "human"
    observed_at: AwareDatetime = Field(default_factory=utcnow)


class ModelAnnouncement(Record):
    avro_name: ClassVar[str] = "model_announcement"
    task: str
    version: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    labels: list[str] = Field(min_length=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    action: AnnouncementAction = "promote"
    created_at: AwareDatetime = Field(default_factory=utcnow)


class DeadLetter(Record):
    avro_name: ClassVar[str] = "dead_letter"
    task: str | None = None
    source_topic: str
    partition: int = -1
    offset: int = -1
    key: bytes | None = None
    value: bytes
    error_kind: str
    message: str
    at: AwareDatetime = Field(default_factory=utcnow)
    value_size: int = -1  # size of the original value; ``value`` may be a prefix of it
    value_sha256: str | None = None  # of the whole original value


class Escalation(Record):
    """An item for human review (``kind`` says why): the teacher refused a critical item,
    overruled a confident critical guess (``contradicted``), or kept failing
    (``retries_exhausted``)."""

    avro_name: ClassVar[str] = "escalation"
    id: str
    task: str
    text: str
    metadata: dict[str, str] = Field(default_factory=dict)
    student_label: str | None = None
    student_confidence: float | None = None
    request_reason: str
    kind: str
    message: str
    teacher_id: str | None = None
    at: AwareDatetime = Field(default_factory=utcnow)


RECORD_TYPES: dict[str, type[Record]] = {
    cls.avro_name: cls
    for cls in (
        Ticket,
        ModerationItem,
        TextItem,
        Decision,
        TeacherRequest,
        TeacherVerdict,
        Feedback,
        ModelAnnouncement,
        DeadLetter,
        Escalation,
    )
}

INPUT_TYPES: dict[str, type[InputRecord]] = {
    "ticket": Ticket,
    "moderation": ModerationItem,
    "text": TextItem,
}


def record_type(name: str) -> type[Record]:
    """A record class by its schema name (``ticket``, ``decision``, ...)."""
    try:
        return RECORD_TYPES[name]
    except KeyError:
        from distillery.errors import ConfigError

        raise ConfigError(
            f"unknown schema {name!r}; known: {', '.join(sorted(RECORD_TYPES))}"
        ) from None


def to_avro_dict(record: Record) -> dict[str, Any]:
    return record.model_dump()
