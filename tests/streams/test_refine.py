"""The refine stage's plain functions (no broker): tier-2 routing, the failure path, tier 1's
destination in a cascade task, and old teacher requests still decoding."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import fastavro
import numpy as np

from distillery.tasks import MODERATION
from models.policy import DecisionPolicy
from schemas.records import Decision, ModerationItem, TeacherRequest
from schemas.serde import SINGLE_OBJECT_MAGIC, decode, encode, schema_versions
from streams.decode import Item, RawEvent
from streams.hotswap import ModelHolder
from streams.refine import RefineRuntime, refine_batch
from streams.routing import Policy, route_batch

CASCADE = MODERATION.model_copy(update={"tiers": ["ngram", "embed"]})
TIER1_ALONE = MODERATION.model_copy(update={"tiers": ["ngram"]})
LABELS = MODERATION.label_names  # ok, spam, ..., self_harm, violent_threat


class FixedTier:
    """A tier whose probabilities are given per text (the routing under test is real)."""

    def __init__(self, version: str, probs: dict[str, list[float]],
                 thresholds: float = 0.8, fail: bool = False) -> None:
        self.version = version
        self.labels = list(LABELS)
        self.probs = probs
        self.policy = DecisionPolicy(tuple(LABELS), (thresholds,) * len(LABELS),
                                     {"self_harm": 0.3, "violent_threat": 0.3})
        self.fail = fail

    def predict_many(self, texts: list[str]) -> Any:
        if self.fail:
            raise RuntimeError("the encoder fell over")
        return SimpleNamespace(probs=np.array([self.probs[t] for t in texts]))

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy:
        return self.policy


def one_hot(label: str, p: float) -> list[float]:
    rest = (1.0 - p) / (len(LABELS) - 1)
    return [p if name == label else rest for name in LABELS]


def runtime(tier: FixedTier | None, audit_rate: float = 0.0) -> RefineRuntime:
    holder = ModelHolder("moderation/embed", lambda a: tier, lambda t, v: None)  # type: ignore
    holder.current = tier
    return RefineRuntime(CASCADE, holder, Policy(audit_rate, 0.2),
                         {"results": "r", "teacher": "t", "deadletter": "d"})


def raw(request: TeacherRequest | bytes, offset: int = 0) -> RawEvent:
    value = request if isinstance(request, bytes) else encode(request)
    return RawEvent("moderation.refine", 0, offset, b"k", value)


def request(i: str, text: str) -> TeacherRequest:
    return TeacherRequest(id=i, task="moderation", text=text, student_label="spam",
                          student_confidence=0.4, model_version="v0007",
                          reason="low_confidence")


def test_tier2_decides_what_it_accepts_and_forwards_the_rest_with_both_scores() -> None:
    tier = FixedTier("embed-v0003", {"sure": one_hot("ok", 0.95), "unsure": one_hot("spam", 0.5),
                                     "alarming": one_hot("ok", 0.6)[:6] + [0.35, 0.0]})
    rt = runtime(tier)
    out = refine_batch(rt, [raw(request("a", "sure")), raw(request("b", "unsure")),
                            raw(request("c", "alarming")), raw(b"garbage", 3)])
    by_topic: dict[str, list[bytes]] = {}
    for topic, _, value, *_ in out:
        by_topic.setdefault(topic, []).append(value)
    (decided,) = [decode(v, Decision) for v in by_topic["r"]]
    assert (decided.id, decided.label, decided.decided_by, decided.model_version) == (
        "a", "ok", "student", "embed-v0003")
    forwarded = {r.id: r for r in (decode(v, TeacherRequest) for v in by_topic["t"])}
    assert set(forwarded) == {"b", "c"}
    b = forwarded["b"]
    assert (b.reason, b.student_label, b.model_version) == ("low_confidence", "spam", "v0007")
    assert (b.tier2_label, b.tier2_version) == ("spam", "embed-v0003")
    assert forwarded["c"].reason == "critical"  # tier 2's floor for self_harm
    assert len(by_topic["d"]) == 1  # only what is not a request at all
    m = rt.metrics
    assert [m.value("distillery_refine_items_in_total"), m.value("distillery_refine_decided_total"),
            m.value("distillery_refine_forwarded_total", reason="low_confidence"),
            m.value("distillery_refine_forwarded_total", reason="critical"),
            m.value("distillery_refine_dead_lettered_total", reason="undecodable")] == [
        4, 1, 1, 1, 1]
    assert m.value("distillery_refine_inference_seconds_count") == 1


def test_audits_of_tier2_decisions_carry_both_tiers() -> None:
    tier = FixedTier("embed-v0001", {"sure": one_hot("ok", 0.95)})
    out = refine_batch(runtime(tier, audit_rate=1.0), [raw(request("a", "sure"))])
    topics = sorted(o.topic for o in out)
    assert topics == ["r", "t"]
    audit = decode(next(o.value for o in out if o.topic == "t"), TeacherRequest)
    assert audit.reason == "audit" and audit.tier2_label == "ok"


def test_without_tier2_or_when_it_fails_the_batch_goes_on_to_the_teacher() -> None:
    reqs = [request("a", "sure"), request("b", "unsure")]
    for cause, rt in (("no_model", runtime(None)),
                      ("tier2_failed", runtime(FixedTier("embed-v1", {}, fail=True)))):
        out = refine_batch(rt, [raw(r, i) for i, r in enumerate(reqs)])
        assert [o.topic for o in out] == ["t", "t"]
        assert [decode(o.value, TeacherRequest) for o in out] == reqs
        assert rt.metrics.value("distillery_refine_unscored_total", cause=cause) == 2
        assert rt.metrics.value("distillery_refine_forwarded_total",
                                reason="low_confidence") == 2
        assert rt.metrics.summary()["unscored/" + cause] == 2


def test_tier1_sends_low_confidence_to_refine_only_in_a_cascade_task() -> None:
    tier1 = FixedTier("v0002", {"sure": one_hot("ok", 0.95), "unsure": one_hot("spam", 0.5),
                                "alarming": one_hot("violent_threat", 0.9)})
    items = [Item(ModerationItem(id=t, text=t), t, RawEvent("moderation", 0, i, None, b"x"))
             for i, t in enumerate(["sure", "unsure", "alarming"])]
    policy = Policy(0.0, 0.2)
    cascade = route_batch(CASCADE, tier1, items, policy)
    alone = route_batch(TIER1_ALONE, tier1, items, policy)
    assert [r.destination for r in cascade] == ["teacher", "refine", "teacher"]
    assert [r.request.reason for r in cascade[1:]] == ["low_confidence", "critical"]  # type: ignore[union-attr]
    assert [r.destination for r in alone] == ["teacher"] * 3
    cold = route_batch(CASCADE, None, items, policy)
    assert {r.destination for r in cold} == {"teacher"}


def test_a_teacher_request_written_with_schema_v1_still_decodes() -> None:
    old = next(s for s in schema_versions() if s.name == "teacher_request" and s.version == "v1")
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC + old.fingerprint)
    fastavro.schemaless_writer(buffer, old.parsed, {
        "id": "old-1", "task": "moderation", "text": "hi", "metadata": {},
        "student_label": "ok", "student_confidence": 0.5, "model_version": "v0001",
        "reason": "low_confidence", "requested_at": datetime.now(UTC)})
    got = decode(buffer.getvalue(), TeacherRequest)
    assert got.id == "old-1" and got.tier2_label is None and got.tier2_version is None


def test_a_request_over_a_bound_is_an_oversized_dead_letter_not_forwarded() -> None:
    rt = runtime(FixedTier("embed-v1", {"sure": one_hot("ok", 0.95)}))
    big = request("big", "sure").model_dump()
    big["metadata"] = {"blob": "x" * 600_000}
    value = encode(TeacherRequest.model_construct(**big))  # as any producer could write it
    out = refine_batch(rt, [raw(value, 7), raw(request("a", "sure"), 8)])
    assert sorted(o.topic for o in out) == ["d", "r"]
    assert rt.metrics.value("distillery_refine_dead_lettered_total", reason="oversized") == 1

