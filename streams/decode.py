"""Raw Kafka bytes of an input topic to a validated input record, or a dead letter.

Nothing here raises: every event becomes either an ``Item`` or a ``DeadLetter`` that
carries the original bytes, the source topic, partition, offset and the reason.

The task's ``input_format`` says what is accepted (``auto``: Avro by its header, else JSON);
JSON is validated by the same pydantic model as Avro, so the reasons are the same
(``empty``, ``undecodable``, ``invalid``, ``oversized``). A task that redacts
(``TaskConfig.redact``) gets its text and its metadata's values redacted here, the one
place every input passes through, so nothing downstream sees what was taken out.
``encode_output`` writes what the
results topic carries in the task's ``output_format``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.errors import SerializationError, ValidationError
from distillery.redact import Redactor
from distillery.tasks import TaskConfig
from schemas.fastwire import encode_decision
from schemas.records import INPUT_TYPES, DeadLetter, Decision, InputRecord
from schemas.serde import decode, encode


@dataclass(frozen=True)
class RawEvent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: float | None = None  # Kafka record timestamp, for end-to-end latency

    @classmethod
    def of_record(cls, record: Any) -> RawEvent:
        """A kafka-python or aiokafka consumer record (its timestamp in ms; -1 or None: none)."""
        stamp = getattr(record, "timestamp", None)
        return cls(record.topic, record.partition, record.offset, record.key, record.value,
                   float(stamp) if stamp is not None and stamp >= 0 else None)


@dataclass(frozen=True)
class Item:
    record: InputRecord
    text: str
    raw: RawEvent
    redactions: Mapping[str, int] = field(default_factory=dict)  # kind -> count replaced


DEAD_LETTER_VALUE_BYTES = 4096  # default prefix kept (``Settings.dead_letter_value_bytes``)


def dead_letter(task: str | None, raw: RawEvent, kind: str, message: str,
                keep_bytes: int = DEAD_LETTER_VALUE_BYTES) -> DeadLetter:
    """A dead letter with at most ``keep_bytes`` of the value, its full size and sha256.

    Bounded so that a dead letter of an input near the broker's size limit can always be
    sent (a whole copy would not fit, and the worker would stall on it).
    """
    value = raw.value or b""
    return DeadLetter(
        task=task,
        source_topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key[:1024] if raw.key else raw.key,
        value=value[:keep_bytes],
        error_kind=kind,
        message=message[:2000],
        value_size=len(value),
        value_sha256=hashlib.sha256(value).hexdigest(),
    )


def decode_event(task: TaskConfig, raw: RawEvent, max_text_chars: int,
                 keep_bytes: int = DEAD_LETTER_VALUE_BYTES) -> Item | DeadLetter:
    """One event to an ``Item`` (record + the text the student reads) or a ``DeadLetter``."""
    decoded = _decode_event(task, raw, max_text_chars)
    if isinstance(decoded, DeadLetter) and keep_bytes != DEAD_LETTER_VALUE_BYTES:
        return dead_letter(task.name, raw, decoded.error_kind, decoded.message, keep_bytes)
    return decoded


def _decode_event(task: TaskConfig, raw: RawEvent, max_text_chars: int) -> Item | DeadLetter:
    if not raw.value:
        return dead_letter(task.name, raw, "empty", "the message has no value")
    cls = INPUT_TYPES[task.schema_name]
    try:
        record = decode(raw.value, cls, max_text_chars=max_text_chars, fmt=task.input_format)
    except SerializationError as exc:
        return dead_letter(task.name, raw, "undecodable", str(exc))
    except ValidationError as exc:
        kind = "oversized" if "over the cap" in str(exc) else "invalid"
        return dead_letter(task.name, raw, kind, str(exc))
    text = record.text_of(task.text_fields)
    if not text.strip():
        return dead_letter(task.name, raw, "invalid", "the task's text fields are empty")
    if len(text) > max_text_chars:
        return dead_letter(
            task.name, raw, "oversized", f"text is {len(text)} characters, over {max_text_chars}"
        )
    redactor = task.redactor
    if redactor is None:
        return Item(record=record, text=text, raw=raw)
    return _redacted(record, text, raw, redactor)


def _redacted(record: InputRecord, text: str, raw: RawEvent, redactor: Redactor) -> Item:
    done = redactor(text)
    counts = Counter(done.counts)
    metadata = {}
    for key, value in record.metadata.items():
        value_done = redactor(value)
        metadata[key] = value_done.text
        counts.update(value_done.counts)
    if counts:
        record = record.model_copy(update={"metadata": metadata})
    return Item(record=record, text=done.text, raw=raw, redactions=counts)


def encode_output(task: TaskConfig, decision: Decision) -> bytes:
    """A decision as its task's results topic carries it (``output_format``: Avro or JSON).

    Avro goes through ``schemas.fastwire``: the same bytes as ``encode``, a third of the
    time (it runs once per event)."""
    if task.output_format == "avro":
        return encode_decision(decision)
    return encode(decision, task.output_format)
