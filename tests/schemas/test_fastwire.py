"""The hand-written decision writer gives fastavro's bytes, and follows the schema."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.fastwire import DECISION_FIELDS, encode_decision
from schemas.records import Decision, to_millis
from schemas.serde import decode, encode, schema_for

TEXTS = ["", "a", "billing", "ünïcødé ✓", "日本語のラベル", "x" * 200, "emoji 🚀 mixed", "\x00nul"]


def _random_decision(rng: random.Random) -> Decision:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        days=rng.randint(-30_000, 30_000), microseconds=rng.randint(0, 86_400 * 10**6))
    return Decision(
        id=rng.choice(TEXTS[1:]) + str(rng.randint(0, 10**12)),
        task=rng.choice(["tickets", "moderation", "ü"]),
        label=rng.choice(TEXTS),
        confidence=rng.choice([0.0, 1.0, rng.random(), 1e-300, 0.5]),
        decided_by=rng.choice(["student", "teacher", "fallback"]),
        model_version=rng.choice([None, "v0001", "embed-v0002", ""]),
        teacher_id=rng.choice([None, "gpt-4o-mini", "oracle"]),
        reason=rng.choice(["confident", "low_confidence", "critical", "cold_start",
                           "teacher_unavailable"]),
        latency_ms=rng.choice([0.0, rng.random() * 1e6, 12.5]),
        cost=rng.choice([0.0, 0.001, rng.random()]),
        decided_at=rng.choice([at, to_millis(at)]),
    )


def test_the_same_bytes_as_fastavro_for_thousands_of_decisions() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        d = _random_decision(rng)
        fast = encode_decision(d)
        assert fast == encode(d), d
        assert decode(fast, Decision) == decode(encode(d), Decision)


def test_a_decision_built_without_validation_encodes_the_same() -> None:
    """The hot path builds decisions with ``model_construct`` (an int cost, a naive time
    would slip through): what it builds in practice encodes the same."""
    now = to_millis(datetime.now(UTC))
    d = Decision.model_construct(id="t1", task="tickets", label="billing", confidence=0.9,
                                 decided_by="student", model_version="v0003",
                                 reason="confident", latency_ms=3.0, cost=0.0, decided_at=now)
    assert encode_decision(d) == encode(d)


def test_the_writer_follows_the_decision_schema() -> None:
    """A field added to, removed from, moved in or retyped in ``decision.avsc`` must reach
    the writer (and this test's copy of what it writes)."""
    written = {"id": "string", "task": "string", "label": "string", "confidence": "double",
               "decided_by": "string", "model_version": ["null", "string"],
               "teacher_id": ["null", "string"], "reason": "string", "latency_ms": "double",
               "cost": "double",
               "decided_at": {"type": "long", "logicalType": "timestamp-millis"}}
    fields = schema_for("decision").parsed["fields"]
    assert tuple(f["name"] for f in fields) == DECISION_FIELDS == tuple(written)
    for f in fields:
        kind = f["type"]
        if isinstance(kind, dict):
            kind = {k: v for k, v in kind.items() if k in ("type", "logicalType")}
        assert kind == written[f["name"]], f
