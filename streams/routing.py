"""The routing policy, as a plain function over a batch: no Kafka, no faust.

The decision itself is ``models.policy.decide`` over the student's probabilities, under the
policy its manifest carries (``student.routing_policy``: calibrated per-class thresholds and
per-critical-label floors; an old manifest gets ``Policy.critical_floor`` for every critical
label). For each decoded item:

* no student (cold start) → teacher, reason ``cold_start``;
* a critical label predicted, or a critical label's probability at or over its floor →
  teacher, reason ``critical``;
* confidence under the predicted class's threshold → teacher, reason ``low_confidence``;
* otherwise decided by the student (reason ``confident``); a deterministic share of those,
  chosen from the id, is also sent to the teacher with reason ``audit``.

Every stage routes the same way (``route_stage``): the first stage here, over decoded
events, and later stages in the refine worker (``streams.refine``), over the requests the
stage before handed on. When the task runs the cascade (``tiers`` has more than one stage),
a ``low_confidence`` item goes to the next stage (``Routed.destination`` ``"refine"``: the
``<task>.refine`` topic) instead of the teacher; a ``critical`` one (predicted, or flagged
by a floor), ``cold_start`` and audits go to the teacher.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.policy import REASONS, DecisionPolicy, Reason, decide
from schemas.records import Decision, RequestReason, TeacherRequest, to_millis
from streams.decode import Item


class StudentLike(Protocol):
    """What routing needs of a student tier: probabilities and the policy to read them by."""

    version: str
    labels: list[str]

    def predict_many(self, texts: list[str]) -> Any: ...

    def routing_policy(self, fallback_floor: float) -> DecisionPolicy: ...


@dataclass(frozen=True)
class Policy:
    """The worker's side of the policy: the audit share, and the floor for critical labels
    that a (pre-calibration) manifest gives no floor of its own."""

    audit_rate: float
    critical_floor: float

    @classmethod
    def for_task(cls, settings: Settings, task: TaskConfig) -> Policy:
        """The task's own values where its table sets them, else the settings'."""
        audit = task.policy.audit_rate
        floor = task.policy.critical_floor
        return cls(audit_rate=settings.audit_rate if audit is None else audit,
                   critical_floor=settings.critical_floor if floor is None else floor)


@dataclass(frozen=True)
class StageOutcome:
    """One item through one stage: its label and confidence, the policy's reason, and
    whether it goes on to the next stage (``low_confidence`` with a stage after this one)."""

    label: str
    confidence: float
    reason: Reason
    onward: bool


@dataclass(frozen=True)
class Routed:
    """What one item turned into: a decision, a teacher request, or both (audit)."""

    item: Item
    decision: Decision | None
    request: TeacherRequest | None
    destination: Literal["teacher", "refine"] = "teacher"  # where ``request`` goes


def audit_selected(item_id: str, rate: float) -> bool:
    """Deterministic from the id: the same item is always (or never) audited.

    >>> audit_selected("ticket-1", 0.0), audit_selected("ticket-1", 1.0)
    (False, True)
    >>> audit_selected("ticket-1", 0.3) == audit_selected("ticket-1", 0.3)
    True
    >>> sum(audit_selected(f"id-{i}", 0.1) for i in range(10_000))  # about 10%
    971
    """
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < rate


def _latency_ms(item: Item, now: datetime) -> float:
    if item.raw.timestamp_ms is None:
        return 0.0
    return max(0.0, now.timestamp() * 1000.0 - item.raw.timestamp_ms)


def _request(
    task: TaskConfig, item: Item, reason: RequestReason, label: str | None, conf: float | None,
    version: str | None, now: datetime,
) -> TeacherRequest:
    return TeacherRequest(
        id=item.record.id, task=task.name, text=item.text, metadata=item.record.metadata,
        student_label=label, student_confidence=conf, model_version=version,
        reason=reason,
        requested_at=now,
    )


def task_rules(student: StudentLike, task: TaskConfig, policy: Policy) -> DecisionPolicy:
    """The student's calibrated policy, plus ``policy.critical_floor`` for labels the task
    declares critical since that version was trained (they have no calibrated floor)."""
    rules = student.routing_policy(policy.critical_floor)
    extra = {c: policy.critical_floor for c in task.critical_labels
             if c in rules.labels and c not in rules.floors}
    return rules.with_floors({**rules.floors, **extra}) if extra else rules


def route_stage(task: TaskConfig, stage: StudentLike, texts: list[str], policy: Policy,
                has_next: bool) -> list[StageOutcome]:
    """Every stage's routing: one ``predict_many``, then ``models.policy.decide`` under the
    stage's calibrated policy (``task_rules``)."""
    if not texts:
        return []
    predictions = stage.predict_many(texts)
    decided = decide(np.asarray(predictions.probs), task_rules(stage, task, policy))
    onward = decided.handed_on() if has_next else np.zeros(len(texts), dtype=bool)
    return [StageOutcome(stage.labels[int(decided.label_ids[i])],
                         min(max(float(decided.confidence[i]), 0.0), 1.0),
                         REASONS[int(decided.reason_codes[i])], bool(onward[i]))
            for i in range(len(texts))]


def route_batch(
    task: TaskConfig, student: StudentLike | None, items: list[Item], policy: Policy
) -> list[Routed]:
    """Route a batch of events through the first stage."""
    now = to_millis(datetime.now(UTC))
    if not items:
        return []
    if student is None:
        return [
            Routed(item, None, _request(task, item, "cold_start", None, None, None, now))
            for item in items
        ]
    outcomes = route_stage(task, student, [item.text for item in items], policy, task.cascade)
    out: list[Routed] = []
    for item, o in zip(items, outcomes, strict=True):
        if o.reason == "confident":
            # built from validated parts (a decoded record, the model's own label, a
            # probability, a millisecond time): not validated again, it is the hot path
            decision = Decision.model_construct(
                id=item.record.id, task=task.name, label=o.label, confidence=o.confidence,
                decided_by="student", model_version=student.version, reason="confident",
                latency_ms=_latency_ms(item, now), cost=0.0, decided_at=now,
            )
            audit = None
            if audit_selected(item.record.id, policy.audit_rate):
                audit = _request(task, item, "audit", o.label, o.confidence, student.version,
                                 now)
            out.append(Routed(item, decision, audit))
            continue
        out.append(Routed(item, None, _request(task, item, o.reason, o.label, o.confidence,
                                               student.version, now),
                          "refine" if o.onward else "teacher"))
    return out
