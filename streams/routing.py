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

When the task runs the cascade (``tiers`` has ``embed``), a ``low_confidence`` request goes
to tier 2 (``Routed.destination`` is ``"refine"``: the ``<task>.refine`` topic) instead of
the teacher; with ``Policy.floors_onward`` (``DISTILLERY_CASCADE_FLOORS_ONWARD``) so does a
``critical`` one flagged by a floor alone (the predicted label is not critical): tier 2's own
calibrated floors judge whether it must reach the teacher. A critical prediction and
``cold_start`` go to the teacher, and so do audits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np

from distillery.tasks import TaskConfig
from models.policy import REASONS, DecisionPolicy, decide
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
    floors_onward: bool = False  # a cascade hands floor-only critical items to tier 2


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


def route_batch(
    task: TaskConfig, student: StudentLike | None, items: list[Item], policy: Policy
) -> list[Routed]:
    """Route a batch with one ``predict_many`` call."""
    now = to_millis(datetime.now(UTC))
    if not items:
        return []
    if student is None:
        return [
            Routed(item, None, _request(task, item, "cold_start", None, None, None, now))
            for item in items
        ]
    predictions = student.predict_many([item.text for item in items])
    decided = decide(np.asarray(predictions.probs), task_rules(student, task, policy))
    onward = (decided.handed_on(policy.floors_onward).tolist() if task.cascade
              else [False] * len(items))
    out: list[Routed] = []
    for i, item in enumerate(items):
        label = student.labels[int(decided.label_ids[i])]
        conf = float(decided.confidence[i])
        reason = REASONS[int(decided.reason_codes[i])]
        if reason == "confident":
            # built from validated parts (a decoded record, the model's own label, a
            # probability, a millisecond time): not validated again, it is the hot path
            decision = Decision.model_construct(
                id=item.record.id, task=task.name, label=label,
                confidence=min(max(conf, 0.0), 1.0), decided_by="student",
                model_version=student.version, reason="confident",
                latency_ms=_latency_ms(item, now), cost=0.0, decided_at=now,
            )
            audit = None
            if audit_selected(item.record.id, policy.audit_rate):
                audit = _request(task, item, "audit", label, conf, student.version, now)
            out.append(Routed(item, decision, audit))
            continue
        to_tier2 = onward[i]
        out.append(
            Routed(item, None, _request(task, item, reason, label, conf, student.version, now),
                   "refine" if to_tier2 else "teacher")
        )
    return out
