"""``distillery report``: what the system did, read back from its topics.

For each task it reads the results, teacher, verdicts and feedback topics plus ``models``
and ``deadletter`` (``read_topics``), computes the figures with plain functions over lists
of records (``task_figures`` and the functions it calls: testable without Kafka) and writes
``report.html`` (inline SVG, see ``workers.report.svg``) and, if asked, the same figures as
JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from distillery.errors import BrokerError, ConfigError, DistilleryError
from distillery.settings import Settings
from distillery.tasks import TaskConfig, resolve_tasks
from schemas.records import (
    DeadLetter,
    Decision,
    Feedback,
    ModelAnnouncement,
    Record,
    TeacherRequest,
    TeacherVerdict,
)
from schemas.serde import decode
from streams.topics import DEADLETTER_TOPIC, MODELS_TOPIC

# models.stage.stage_version's embed prefix (not imported: it would load onnxruntime for a report)
TIER2_PREFIX = "embed-"

log = logging.getLogger(__name__)

SHARE_BUCKETS = 20
AUDIT_BUCKETS = 10
COST_POINTS = 40
MAX_MINUTE_BINS = 120
LAST_N = 1000
NO_VERSION = "(no student)"

R = TypeVar("R", bound=Record)


@dataclass
class TaskData:
    """Every record of one task, as read from its topics."""

    task: TaskConfig
    decisions: list[Decision] = field(default_factory=list)
    requests: list[TeacherRequest] = field(default_factory=list)
    verdicts: list[TeacherVerdict] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    announcements: list[ModelAnnouncement] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    undecodable: int = 0


# --- plain figure functions ---------------------------------------------------------------


def first_by_id(records: Iterable[R]) -> list[R]:
    """Keep the first record of each id (at-least-once delivery may repeat one)."""
    seen: set[str] = set()
    out: list[R] = []
    for record in records:
        key = getattr(record, "id")  # noqa: B009 - every record passed here has an id
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def bucket_edges(stamps: Sequence[float], n: int) -> list[float]:
    """``n + 1`` edges evenly across the span of ``stamps`` (one bucket if it has no span)."""
    lo, hi = min(stamps), max(stamps)
    if hi <= lo:
        return [lo, hi]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def bucket_index(stamp: float, edges: Sequence[float]) -> int:
    n = len(edges) - 1
    width = edges[-1] - edges[0]
    if width <= 0:
        return 0
    return min(n - 1, max(0, int((stamp - edges[0]) / width * n)))


def tier_of(decision: Decision) -> str:
    """Who decided: ``tier1`` (the n-gram student), ``tier2`` (the cascade's refine worker:
    a student decision whose ``model_version`` starts with ``embed-``) or ``teacher``
    (the teacher, or the fallback when it was unavailable)."""
    if decision.decided_by != "student":
        return "teacher"
    return "tier2" if (decision.model_version or "").startswith(TIER2_PREFIX) else "tier1"


def tier_shares(decisions: Sequence[Decision]) -> dict[str, float | None]:
    """Each tier's share of the decisions (see ``tier_of``)."""
    counts = Counter(tier_of(d) for d in decisions)
    n = len(decisions)
    return {t: (counts[t] / n if n else None) for t in ("tier1", "tier2", "teacher")}


def share_over_time(decisions: Sequence[Decision], n: int = SHARE_BUCKETS) -> list[dict[str, Any]]:
    """Decisions in ``n`` time buckets: counts by decider and the student's share (and tier
    2's, the part of the student's share decided by the cascade's second tier)."""
    if not decisions:
        return []
    edges = bucket_edges([_ts(d.decided_at) for d in decisions], n)
    counts = [Counter[str]() for _ in range(len(edges) - 1)]
    for d in decisions:
        bucket = counts[bucket_index(_ts(d.decided_at), edges)]
        bucket[d.decided_by] += 1
        bucket["tier2"] += tier_of(d) == "tier2"
    out = []
    for i, c in enumerate(counts):
        total = c["student"] + c["teacher"] + c["fallback"]
        out.append({
            "start": _iso(edges[i]), "end": _iso(edges[i + 1]), "events": total,
            "student": c["student"], "teacher": c["teacher"], "fallback": c["fallback"],
            "tier2": c["tier2"],
            "student_share": c["student"] / total if total else None,
            "tier2_share": c["tier2"] / total if total else None,
        })
    return out


def versions_by_id(decisions: Sequence[Decision],
                   requests: Sequence[TeacherRequest]) -> dict[str, str]:
    """The student version behind each decision: its own, else its teacher request's."""
    out = {r.id: r.model_version or NO_VERSION for r in requests if r.reason != "audit"}
    for d in decisions:
        if d.model_version:
            out[d.id] = d.model_version
        else:
            out.setdefault(d.id, NO_VERSION)
    return out


def share_by_version(decisions: Sequence[Decision],
                     requests: Sequence[TeacherRequest]) -> list[dict[str, Any]]:
    """Per student version (in order of first decision): events and the student's share."""
    versions = versions_by_id(decisions, requests)
    counts: dict[str, Counter[str]] = {}
    for d in sorted(decisions, key=lambda d: d.decided_at):
        counts.setdefault(versions.get(d.id, NO_VERSION), Counter())[d.decided_by] += 1
    return [
        {"version": v, "events": sum(c.values()), "student": c["student"],
         "student_share": c["student"] / sum(c.values())}
        for v, c in counts.items()
    ]


BIN_SECONDS = (10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def teacher_calls_per_minute(verdicts: Sequence[TeacherVerdict],
                             max_bins: int = MAX_MINUTE_BINS) -> list[dict[str, Any]]:
    """Teacher calls per minute over time, in the finest bins of ``BIN_SECONDS`` that keep
    at most ``max_bins`` of them: 10-second bins for a one-minute demo, whole minutes or
    more for a day of traffic (``minutes`` is a bin's width, ``per_minute`` its rate)."""
    if not verdicts:
        return []
    stamps = [_ts(v.decided_at) for v in verdicts]
    first, last = min(stamps), max(stamps)
    width = next((w for w in BIN_SECONDS
                  if int(last // w - first // w) + 1 <= max_bins), BIN_SECONDS[-1])
    lo = first // width * width
    count = int((last - lo) // width) + 1
    bins = Counter(int((s - lo) // width) for s in stamps)
    return [
        {"start": _iso(lo + i * width), "minutes": width / 60, "calls": bins[i],
         "per_minute": bins[i] * 60 / width}
        for i in range(count)
    ]


def mean_call_cost(verdicts: Sequence[TeacherVerdict]) -> float:
    return sum(v.cost for v in verdicts) / len(verdicts) if verdicts else 0.0


def cost_over_time(decisions: Sequence[Decision], verdicts: Sequence[TeacherVerdict],
                   points: int = COST_POINTS) -> list[dict[str, Any]]:
    """Cumulative teacher cost against the teacher-only baseline (every event a call)."""
    stamps = [_ts(d.decided_at) for d in decisions] + [_ts(v.decided_at) for v in verdicts]
    if not stamps:
        return []
    unit = mean_call_cost(verdicts)
    edges = bucket_edges(stamps, points)
    spent = sorted((_ts(v.decided_at), v.cost) for v in verdicts)
    decided = sorted(_ts(d.decided_at) for d in decisions)
    out, i, j, cost = [], 0, 0, 0.0
    for edge in edges:
        while i < len(spent) and spent[i][0] <= edge:
            cost += spent[i][1]
            i += 1
        while j < len(decided) and decided[j] <= edge:
            j += 1
        out.append({"at": _iso(edge), "teacher_cost": cost, "teacher_only_cost": j * unit})
    return out


def audits(verdicts: Sequence[TeacherVerdict]) -> list[TeacherVerdict]:
    return [v for v in verdicts if v.reason == "audit" and v.student_label is not None]


def audit_accuracy(verdicts: Sequence[TeacherVerdict]) -> float | None:
    """Share of audited student decisions the teacher agreed with (None: no audits)."""
    checked = audits(verdicts)
    if not checked:
        return None
    return sum(v.student_label == v.label for v in checked) / len(checked)


def audit_accuracy_over_time(verdicts: Sequence[TeacherVerdict],
                             n: int = AUDIT_BUCKETS) -> list[dict[str, Any]]:
    checked = audits(verdicts)
    if not checked:
        return []
    edges = bucket_edges([_ts(v.decided_at) for v in checked], n)
    tally = [[0, 0] for _ in range(len(edges) - 1)]
    for v in checked:
        cell = tally[bucket_index(_ts(v.decided_at), edges)]
        cell[0] += 1
        cell[1] += v.student_label == v.label
    return [
        {"start": _iso(edges[i]), "end": _iso(edges[i + 1]), "audits": total,
         "correct": right, "accuracy": right / total if total else None}
        for i, (total, right) in enumerate(tally)
    ]


def critical_recall_by_version(
    task: TaskConfig, announcements: Sequence[ModelAnnouncement], decisions: Sequence[Decision],
    requests: Sequence[TeacherRequest], feedback: Sequence[Feedback],
) -> dict[str, dict[str, Any]]:
    """Per version: recall of each critical label as announced (the trainer's held-out
    metrics) and as measured on decisions made under that version against feedback."""
    critical = task.critical_labels
    out: dict[str, dict[str, Any]] = {}
    if any(not d.model_version for d in decisions):
        out[NO_VERSION] = {"announced": {}, "measured": {}, "support": {}}
    for a in sorted(announcements, key=lambda a: a.created_at):
        if a.action != "promote":
            continue
        announced = {lab: a.metrics[f"recall:{lab}"] for lab in critical
                     if f"recall:{lab}" in a.metrics}
        out.setdefault(a.version, {"announced": {}, "measured": {}, "support": {}})
        out[a.version]["announced"].update(announced)
    gold = {f.id: f.label for f in feedback}
    versions = versions_by_id(decisions, requests)
    hits: dict[str, Counter[str]] = defaultdict(Counter)
    support: dict[str, Counter[str]] = defaultdict(Counter)
    for d in decisions:
        truth = gold.get(d.id)
        if truth in critical:
            version = versions.get(d.id, NO_VERSION)
            support[version][truth] += 1
            hits[version][truth] += d.label == truth
    for version, counts in support.items():
        entry = out.setdefault(version, {"announced": {}, "measured": {}, "support": {}})
        entry["support"] = dict(counts)
        entry["measured"] = {lab: hits[version][lab] / n for lab, n in counts.items()}
    return {v: e for v, e in out.items() if e["announced"] or e["support"]}


def catch_by_version(task: TaskConfig, decisions: Sequence[Decision],
                     requests: Sequence[TeacherRequest], verdicts: Sequence[TeacherVerdict],
                     feedback: Sequence[Feedback],
                     announcements: Sequence[ModelAnnouncement]) -> dict[str, dict[str, Any]]:
    """Per version, each critical label's catch rate: as announced (the trainer's figure on
    held-out verdicts) and as measured here with ``models.system.system_metrics`` on the
    verdicts of the items routed under that version — a deferred item reached the teacher
    (caught); an audited one was decided by the student (caught if its label was right) and
    stands for ``student decisions / audits`` of that version's decisions. The truth is the
    feedback where there is any, else the teacher's verdict."""
    from models.system import system_metrics

    critical = task.critical_labels
    out: dict[str, dict[str, Any]] = {}
    for a in sorted(announcements, key=lambda a: a.created_at):
        if a.action == "promote":
            entry = out.setdefault(a.version, {"announced": {}, "measured": {}, "support": {}})
            entry["announced"].update({lab: a.metrics[f"catch:{lab}"] for lab in critical
                                       if f"catch:{lab}" in a.metrics})
    if not critical:
        return {}
    gold = {f.id: f.label for f in feedback}
    versions = versions_by_id(decisions, requests)
    by_student = Counter(versions.get(d.id, NO_VERSION) for d in decisions
                         if d.decided_by == "student")
    rows: dict[str, list[tuple[str, bool, str | None]]] = defaultdict(list)
    for v in verdicts:
        version = versions.get(v.id, NO_VERSION)
        audit = v.reason == "audit"
        rows[version].append((gold.get(v.id, v.label), audit, v.student_label if audit else None))
    for version, items in rows.items():
        audits_n = sum(1 for _, audit, _ in items if audit)
        weight = by_student[version] / audits_n if audits_n else 1.0
        m = system_metrics([t for t, _, _ in items], [a for _, a, _ in items],
                           [lab for _, _, lab in items], critical=critical,
                           weights=[weight if a else 1.0 for _, a, _ in items])
        if any(m.critical_support.values()):
            entry = out.setdefault(version, {"announced": {}, "measured": {}, "support": {}})
            entry["measured"] = {k: v for k, v in m.catch_rate.items() if v is not None}
            entry["support"] = {k: round(v, 1) for k, v in m.critical_support.items() if v}
    return {v: e for v, e in out.items() if e["announced"] or e["measured"]}


def policy_figures(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The serving version's policy: floors, targets and the calls-vs-accuracy curve its
    calibration measured on held-out verdicts (None for a version without one)."""
    policy = (manifest or {}).get("policy")
    if not isinstance(policy, dict):
        return None
    return {"version": (manifest or {}).get("version"),
            "accuracy_target": policy.get("accuracy_target"),
            "catch_target": policy.get("catch_target"), "floors": policy.get("floors", {}),
            "floor_basis": policy.get("floor_basis", {}), "sample": policy.get("sample", {}),
            "curve": [{k: v for k, v in p.items() if k != "thresholds"}
                      for p in policy.get("curve", [])]}


def confusion(task: TaskConfig, decisions: Sequence[Decision], verdicts: Sequence[TeacherVerdict],
              feedback: Sequence[Feedback]) -> dict[str, Any]:
    """Decisions against feedback where there is any, else the teacher against the student
    on audited items. Rows are the truth, columns the prediction."""
    gold = {f.id: f.label for f in feedback}
    pairs = [(gold[d.id], d.label) for d in decisions if d.id in gold]
    source, rows, cols = "feedback", "feedback (gold)", "decision"
    if not pairs:
        pairs = [(v.label, v.student_label or "") for v in audits(verdicts)]
        source, rows, cols = "audit", "teacher verdict", "student"
    if not pairs:
        return {"source": None, "labels": [], "matrix": [], "rows": rows, "cols": cols}
    labels = list(task.label_names)
    labels += sorted({lab for pair in pairs for lab in pair} - set(labels))
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, predicted in pairs:
        matrix[index[truth]][index[predicted]] += 1
    return {"source": source, "labels": labels, "matrix": matrix, "rows": rows, "cols": cols}


def dead_letters_by_kind(dead: Sequence[DeadLetter]) -> dict[str, int]:
    return dict(Counter(d.error_kind for d in dead).most_common())


def promoted_versions(announcements: Sequence[ModelAnnouncement]) -> list[dict[str, Any]]:
    """Promotions and rollbacks in time order (for markers and the model table)."""
    return [
        {"version": a.version, "action": a.action, "at": _iso(_ts(a.created_at)),
         "accuracy": a.metrics.get("accuracy"), "macro_f1": a.metrics.get("macro_f1")}
        for a in sorted(announcements, key=lambda a: a.created_at)
    ]


def summary(data: TaskData) -> dict[str, Any]:
    """The headline figures of one task (the keys of ``--json``)."""
    decisions = sorted(first_by_id(data.decisions), key=lambda d: d.decided_at)
    verdicts = first_by_id(data.verdicts)
    by = Counter(d.decided_by for d in decisions)
    last = decisions[-LAST_N:]
    cost = sum(v.cost for v in verdicts)
    baseline = len(decisions) * mean_call_cost(verdicts)
    return {
        "events": len(decisions),
        "decided_by_student": by["student"],
        "decided_by_teacher": by["teacher"],
        "decided_by_fallback": by["fallback"],
        "student_share": by["student"] / len(decisions) if decisions else None,
        "tier_shares": tier_shares(decisions),
        "student_share_last_1000": (sum(d.decided_by == "student" for d in last) / len(last)
                                    if last else None),
        "teacher_calls": len(verdicts),
        "teacher_cost": cost,
        # the oracle is a simulation: its price per call is notional (the demo sets one)
        "cost_is_notional": bool(verdicts) and all(v.teacher_id == "oracle" for v in verdicts),
        "teacher_only_cost": baseline,
        "saving": baseline - cost,
        "audit_accuracy": audit_accuracy(verdicts),
        "audits": len(audits(verdicts)),
        "models_promoted": len({a.version for a in data.announcements if a.action == "promote"}),
        "dead_lettered": len(data.dead_letters),
        "feedback": len(first_by_id(data.feedback)),
    }


def task_figures(data: TaskData, serving: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every figure of one task: the summary plus the series the plots draw.

    ``serving`` is the serving version's manifest (for its policy and curve), if known."""
    decisions = sorted(first_by_id(data.decisions), key=lambda d: d.decided_at)
    verdicts = first_by_id(data.verdicts)
    requests = first_by_id(data.requests)
    feedback = data.feedback  # later feedback on an id corrects earlier feedback
    out = summary(data)
    out.update({
        "share_over_time": share_over_time(decisions),
        "share_by_version": share_by_version(decisions, requests),
        "teacher_calls_per_minute": teacher_calls_per_minute(verdicts),
        "cost_over_time": cost_over_time(decisions, verdicts),
        "audit_accuracy_over_time": audit_accuracy_over_time(verdicts),
        "critical_labels": data.task.critical_labels,
        "critical_recall_by_version": critical_recall_by_version(
            data.task, data.announcements, decisions, requests, feedback),
        "catch_rate_by_version": catch_by_version(
            data.task, decisions, requests, verdicts, feedback, data.announcements),
        "policy": policy_figures(serving),
        "confusion": confusion(data.task, decisions, verdicts, feedback),
        "dead_letters_by_kind": dead_letters_by_kind(data.dead_letters),
        "models": promoted_versions(data.announcements),
        "undecodable": data.undecodable,
    })
    return out


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


# --- reading the topics -------------------------------------------------------------------

_ROLES: dict[str, type[Record]] = {
    "decisions": Decision, "requests": TeacherRequest, "verdicts": TeacherVerdict,
    "feedback": Feedback, "announcements": ModelAnnouncement, "dead_letters": DeadLetter,
}


def topic_roles(settings: Settings, tasks: Sequence[TaskConfig]) -> dict[str, tuple[str, str]]:
    """Full topic name -> (task name or ``*`` for shared topics, role)."""
    roles: dict[str, tuple[str, str]] = {
        settings.topic(MODELS_TOPIC): ("*", "announcements"),
        settings.topic(DEADLETTER_TOPIC): ("*", "dead_letters"),
    }
    for task in tasks:
        for name, role in ((task.results_topic, "decisions"), (task.teacher_topic, "requests"),
                           (task.verdicts_topic, "verdicts"), (task.feedback_topic, "feedback")):
            roles[settings.topic(name)] = (task.name, role)
    return roles


def _owner(record: Record, data: dict[str, TaskData], topic_owner: dict[str, str]) -> str | None:
    task = getattr(record, "task", None)
    if task in data:
        return str(task)
    if isinstance(record, DeadLetter):
        return topic_owner.get(record.source_topic)
    return None


def sort_messages(settings: Settings, tasks: Sequence[TaskConfig],
                  messages: Iterable[Any]) -> dict[str, TaskData]:
    """Decode messages (``.topic``, ``.value``) into per-task records; skip undecodable."""
    roles = topic_roles(settings, tasks)
    data = {t.name: TaskData(task=t) for t in tasks}
    topic_owner = {settings.topic(t.input_topic): t.name for t in tasks}
    topic_owner.update({topic: owner for topic, (owner, _) in roles.items() if owner != "*"})
    for message in messages:
        owner, role = roles.get(message.topic, (None, None))
        if role is None:
            continue
        try:
            record = decode(message.value or b"", _ROLES[role])
        except DistilleryError as exc:
            log.warning("skipping an undecodable record on %s: %s", message.topic, exc)
            if owner in data:
                data[owner].undecodable += 1
            continue
        target = owner if owner != "*" else _owner(record, data, topic_owner)
        if target is not None and target in data:
            getattr(data[target], role).append(record)
    return data


def existing_topics(settings: Settings) -> set[str]:
    from kafka.errors import KafkaError

    from streams.topics import list_topics

    try:
        return set(list_topics(settings))
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc


def read_topics(settings: Settings, tasks: Sequence[TaskConfig]) -> dict[str, TaskData]:
    """Every record of the tasks' topics, from the beginning to the current end offsets."""
    from workers.trainer.consume import read_range

    wanted = topic_roles(settings, tasks)
    present = existing_topics(settings)
    topics = [t for t in wanted if t in present]
    missing = sorted(set(wanted) - present)
    if missing:
        log.info("%s topics do not exist yet (nothing to read from them): %s", len(missing),
                 ", ".join(missing))
    messages: list[Any] = []
    if topics:
        try:
            messages = asyncio.run(read_range(settings, topics))
        except DistilleryError:
            raise
        except Exception as exc:  # aiokafka raises its own kinds on a lost connection
            raise BrokerError(f"cannot read the topics from {settings.kafka_bootstrap}: {exc}"
                              ) from exc
    log.info("read %s messages from %s topics", len(messages), len(topics))
    return sort_messages(settings, tasks, messages)


# --- the command's work -------------------------------------------------------------------


def check_paths(out: Path, json_file: Path | None) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a directory, and {out} is a file")
    if json_file is not None and not json_file.parent.is_dir():
        raise ConfigError(f"--json: directory does not exist: {json_file.parent}")
    if json_file is not None and json_file.is_dir():
        raise ConfigError(f"--json must name a file, and {json_file} is a directory")


def write_report(figures: dict[str, dict[str, Any]], out: Path, *, title: str = "distillery report",
                 json_file: Path | None = None, source: str = "") -> Path:
    """Write ``<out>/report.html`` (and the JSON figures); returns the page's path."""
    from workers.report.page import render_page

    out.mkdir(parents=True, exist_ok=True)
    page = out / "report.html"
    page.write_text(render_page(figures, title=title, source=source), encoding="utf-8")
    if json_file is not None:
        json_file.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    log.info("report written to %s", page)
    return page


def _serving(settings: Settings, task: str) -> dict[str, Any] | None:
    from models.registry import Registry

    try:
        manifest = Registry(settings.registry_root).serving(task)
    except DistilleryError as exc:
        log.warning("cannot read the serving version of %s: %s", task, exc)
        return None
    return manifest.data if manifest is not None else None


def build_report(settings: Settings, task_names: Sequence[str] | None = None,
                 out: Path = Path("distillery-report"),
                 json_file: Path | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Read the topics, compute the figures and write the page; returns (page, figures)."""
    tasks = resolve_tasks(settings, list(dict.fromkeys(task_names or [])))
    check_paths(out, json_file)
    data = read_topics(settings, tasks)
    figures = {name: task_figures(d, _serving(settings, name)) for name, d in data.items()}
    source = f"{settings.kafka_bootstrap}, topic prefix {settings.topic_prefix or '(none)'}"
    return write_report(figures, out, json_file=json_file, source=source), figures
