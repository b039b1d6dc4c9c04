"""Every field that travels on is bounded (issue 29, item 2): a record over a bound is
refused with "over the cap", so the worker dead-letters it as ``oversized`` instead of
writing an output the broker refuses."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.errors import ValidationError
from distillery.tasks import TICKETS
from schemas.records import (
    MAX_ID_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES,
    TeacherRequest,
    TeacherVerdict,
    Ticket,
)
from schemas.serde import decode, encode, validate
from streams.decode import DeadLetter, RawEvent, decode_event


def _ticket(**extra: Any) -> dict[str, Any]:
    return {"id": "t1", "subject": "Help", "body": "my parcel is late", **extra}


@pytest.mark.parametrize("field, value", [
    ("id", "x" * (MAX_ID_CHARS + 1)),
    ("id", "x" * 500_000),
    ("channel", "c" * (MAX_ID_CHARS + 1)),
    ("metadata", {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}),
    ("metadata", {"blob": "x" * MAX_METADATA_BYTES}),
])
def test_an_input_over_a_bound_is_an_oversized_dead_letter(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match="over the cap"):
        validate(Ticket, _ticket(**{field: value}))
    raw_value = encode(Ticket.model_construct(**{**Ticket(**_ticket()).model_dump(),
                                                 field: value}))
    raw = RawEvent("tickets", 0, 5, b"k", raw_value)
    letter = decode_event(TICKETS, raw, 20_000)
    assert isinstance(letter, DeadLetter)
    assert letter.error_kind == "oversized" and "over the cap" in letter.message
    assert letter.value_size == len(raw_value) and len(letter.value) <= 4096


def test_inputs_at_the_bounds_pass() -> None:
    validate(Ticket, _ticket(id="x" * MAX_ID_CHARS,
                             metadata={f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)}))
    validate(Ticket, _ticket(metadata={"blob": "x" * (MAX_METADATA_BYTES - 4)}))


def test_the_teacher_path_enforces_max_text_chars() -> None:
    request = TeacherRequest.model_construct(id="r", task="tickets", text="x" * 30_000,
                                             metadata={}, reason="low_confidence")
    with pytest.raises(ValidationError, match="over the cap"):
        decode(encode(request), TeacherRequest, max_text_chars=20_000)
    assert decode(encode(request), TeacherRequest, max_text_chars=40_000).text == "x" * 30_000
    with pytest.raises(ValidationError, match="over the cap"):
        validate(TeacherRequest, {"id": "r", "task": "tickets", "text": "ok",
                                  "reason": "audit", "metadata": {"m": "x" * 20_000}})
    with pytest.raises(ValidationError, match="over the cap"):
        validate(TeacherVerdict, {"id": "r", "task": "tickets", "text": "x" * 30_000,
                                  "label": "billing", "teacher_id": "t", "reason": "audit"})
