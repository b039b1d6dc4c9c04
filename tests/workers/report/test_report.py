"""``distillery report``: figure functions on constructed records, the page, the command."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from distillery.errors import ConfigError
from distillery.settings import Settings, load_settings
from distillery.tasks import MODERATION, TICKETS, resolve_tasks
from schemas.records import (
    DeadLetter,
    Decision,
    Feedback,
    ModelAnnouncement,
    TeacherRequest,
    TeacherVerdict,
)
from schemas.serde import encode
from workers.cli import report as cli_report
from workers.report import figures as report
from workers.report.page import render_page
from workers.report.svg import Bars, Series, bar_chart, heatmap, line_chart, nice_ticks

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0" * 64


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def decision(i: int, by: str, label: str = "ok", version: str | None = None,
             t: float = 0.0, cost: float = 0.0) -> Decision:
    reason = {"student": "confident", "teacher": "low_confidence",
              "fallback": "teacher_unavailable"}[by]
    return Decision(id=f"e{i}", task="moderation", label=label, confidence=0.9,
                    decided_by=by, model_version=version if by != "teacher" else None,  # type: ignore[arg-type]
                    reason=reason, cost=cost, decided_at=at(t))  # type: ignore[arg-type]


def verdict(i: int, label: str, *, student: str | None = None, reason: str = "low_confidence",
            t: float = 0.0, cost: float = 0.01) -> TeacherVerdict:
    return TeacherVerdict(id=f"e{i}", task="moderation", text="some text", label=label,
                          teacher_id="oracle", student_label=student, reason=reason,  # type: ignore[arg-type]
                          cost=cost, decided_at=at(t))


def request(i: int, version: str | None, reason: str = "low_confidence") -> TeacherRequest:
    return TeacherRequest(id=f"e{i}", task="moderation", text="some text", model_version=version,
                          reason=reason, requested_at=T0)  # type: ignore[arg-type]


def announcement(version: str, t: float, recall: float,
                 action: str = "promote") -> ModelAnnouncement:
    return ModelAnnouncement(
        task="moderation", version=version, uri=f"file:///r/{version}", sha256=SHA,
        labels=MODERATION.label_names, action=action, created_at=at(t),  # type: ignore[arg-type]
        metrics={"accuracy": 0.9, "macro_f1": 0.8, "recall:self_harm": recall,
                 "recall:violent_threat": recall - 0.05, "catch:self_harm": recall + 0.05})


def scenario(n: int = 200) -> report.TaskData:
    """Cold start (teacher decides), then v1 (half student), then v2 (mostly student)."""
    data = report.TaskData(task=MODERATION)
    for i in range(n):
        t = i * 6.0  # one event every 6 s: 20 minutes in all
        phase = 0 if i < n // 4 else (1 if i < n // 2 else 2)
        version = [None, "v1", "v2"][phase]
        student = phase == 1 and i % 2 == 0 or phase == 2 and i % 10 != 0
        if student:
            data.decisions.append(decision(i, "student", "ok", version, t))
            if i % 5 == 0:
                label = "spam" if i % 15 == 0 else "ok"  # the teacher disagrees now and then
                data.requests.append(request(i, version, "audit"))
                data.verdicts.append(verdict(i, label, student="ok", reason="audit", t=t + 1))
        else:
            label = "self_harm" if i % 7 == 0 else "ok"
            data.requests.append(request(i, version, "cold_start" if version is None
                                         else "low_confidence"))
            data.verdicts.append(verdict(i, label, t=t + 1))
            data.decisions.append(decision(i, "teacher", label, None, t + 1, cost=0.01))
    data.announcements += [announcement("v1", n // 4 * 6.0 - 3, 0.85),
                           announcement("v2", n // 2 * 6.0 - 3, 0.9)]
    return data


# --- figure functions ---------------------------------------------------------------------


def test_first_by_id_keeps_the_first() -> None:
    a, b = decision(1, "student", "ok"), decision(1, "teacher", "spam")
    assert report.first_by_id([a, b, decision(2, "student")]) == [a, decision(2, "student")]


def test_share_over_time_grows() -> None:
    rows = report.share_over_time(scenario().decisions, n=4)
    assert len(rows) == 4
    assert sum(r["events"] for r in rows) == 200
    shares = [r["student_share"] for r in rows]
    assert shares[0] == 0.0 and shares[-1] > 0.85
    assert shares == sorted(shares)


def test_share_over_time_single_instant_and_empty() -> None:
    rows = report.share_over_time([decision(1, "student"), decision(2, "teacher")])
    assert len(rows) == 1 and rows[0]["student_share"] == 0.5
    assert report.share_over_time([]) == []


def test_share_by_version_uses_request_versions_for_teacher_decisions() -> None:
    data = scenario()
    rows = {r["version"]: r for r in report.share_by_version(data.decisions, data.requests)}
    assert list(rows) == [report.NO_VERSION, "v1", "v2"]
    assert rows[report.NO_VERSION]["student_share"] == 0.0
    assert rows["v1"]["student_share"] == 0.5
    assert rows["v2"]["student_share"] == 0.9
    assert sum(r["events"] for r in rows.values()) == 200


def test_teacher_calls_per_minute() -> None:
    verdicts = [verdict(i, "ok", t=s) for i, s in enumerate([0, 10, 20, 70, 200])]
    rows = report.teacher_calls_per_minute(verdicts)  # a short span: 10-second bins
    assert len(rows) == 21 and all(r["minutes"] == 10 / 60 for r in rows)
    assert [i for i, r in enumerate(rows) if r["calls"]] == [0, 1, 2, 7, 20]
    assert rows[0]["per_minute"] == 6.0
    minutes = report.teacher_calls_per_minute(verdicts, max_bins=4)
    assert [r["calls"] for r in minutes] == [3, 1, 0, 1] and minutes[0]["minutes"] == 1
    wide = report.teacher_calls_per_minute(verdicts, max_bins=2)
    assert [r["calls"] for r in wide] == [4, 1] and wide[0]["per_minute"] == 2.0


def test_cost_against_baseline() -> None:
    data = scenario()
    rows = report.cost_over_time(data.decisions, data.verdicts)
    summary = report.summary(data)
    assert summary["teacher_calls"] == len(data.verdicts)
    assert summary["teacher_cost"] == pytest.approx(0.01 * len(data.verdicts))
    assert summary["teacher_only_cost"] == pytest.approx(0.01 * 200)
    assert summary["saving"] == pytest.approx(summary["teacher_only_cost"]
                                              - summary["teacher_cost"])
    assert rows[-1]["teacher_cost"] == pytest.approx(summary["teacher_cost"])
    assert rows[-1]["teacher_only_cost"] == pytest.approx(summary["teacher_only_cost"])
    costs = [r["teacher_cost"] for r in rows]
    assert costs == sorted(costs)


def test_audit_accuracy() -> None:
    verdicts = [verdict(1, "ok", student="ok", reason="audit", t=0),
                verdict(2, "spam", student="ok", reason="audit", t=60),
                verdict(3, "spam", student="spam", reason="audit", t=120),
                verdict(4, "spam", student="ok", reason="low_confidence", t=120)]
    assert report.audit_accuracy(verdicts) == pytest.approx(2 / 3)
    rows = report.audit_accuracy_over_time(verdicts, n=2)
    assert [(r["audits"], r["correct"]) for r in rows] == [(1, 1), (2, 1)]
    assert report.audit_accuracy([]) is None


def test_critical_recall_announced_and_measured() -> None:
    data = scenario()
    # gold labels: two self_harm items decided under v1, one caught and one missed
    data.decisions += [decision(900, "teacher", "self_harm", t=700),
                       decision(901, "student", "ok", "v1", t=701)]
    data.requests.append(request(900, "v1"))
    data.feedback += [Feedback(id="e900", task="moderation", label="self_harm"),
                      Feedback(id="e901", task="moderation", label="self_harm")]
    figures = report.critical_recall_by_version(MODERATION, data.announcements, data.decisions,
                                                data.requests, data.feedback)
    assert figures["v1"]["announced"] == {"self_harm": 0.85, "violent_threat": pytest.approx(0.8)}
    assert figures["v2"]["announced"]["self_harm"] == 0.9
    assert figures["v1"]["measured"] == {"self_harm": 0.5}
    assert figures["v1"]["support"] == {"self_harm": 2}
    assert figures["v2"]["measured"] == {}


def test_confusion_prefers_feedback_then_audits() -> None:
    decisions = [decision(1, "student", "ok"), decision(2, "student", "ok"),
                 decision(3, "teacher", "spam")]
    feedback = [Feedback(id="e1", task="moderation", label="ok"),
                Feedback(id="e2", task="moderation", label="spam")]
    audits = [verdict(1, "spam", student="ok", reason="audit")]
    c = report.confusion(MODERATION, decisions, audits, feedback)
    index = {lab: i for i, lab in enumerate(c["labels"])}
    assert c["source"] == "feedback" and c["labels"][:len(MODERATION.labels)] == \
        MODERATION.label_names
    assert c["matrix"][index["ok"]][index["ok"]] == 1
    assert c["matrix"][index["spam"]][index["ok"]] == 1
    assert sum(map(sum, c["matrix"])) == 2
    c = report.confusion(MODERATION, decisions, audits, [])
    assert c["source"] == "audit" and c["matrix"][index["spam"]][index["ok"]] == 1
    assert report.confusion(MODERATION, decisions, [], [])["source"] is None


def test_confusion_adds_unknown_labels() -> None:
    c = report.confusion(MODERATION, [decision(1, "student", "weird")], [],
                         [Feedback(id="e1", task="moderation", label="ok")])
    assert c["labels"][-1] == "weird" and len(c["labels"]) == len(MODERATION.labels) + 1


def test_summary_and_dead_letters() -> None:
    data = scenario()
    data.decisions.append(decision(0, "student", "spam", "v9", t=9999))  # a duplicate id
    data.decisions.append(decision(999, "fallback", "ok", "v2", t=1300))
    data.dead_letters += [
        DeadLetter(source_topic="moderation", value=b"x", error_kind="serialization",
                   message="bad"),
        DeadLetter(source_topic="moderation", value=b"y", error_kind="serialization",
                   message="bad"),
        DeadLetter(source_topic="moderation", value=b"z", error_kind="validation",
                   message="empty text"),
    ]
    s = report.summary(data)
    assert s["events"] == 201
    assert s["decided_by_student"] + s["decided_by_teacher"] + s["decided_by_fallback"] == 201
    assert s["decided_by_fallback"] == 1
    assert s["models_promoted"] == 2 and s["dead_lettered"] == 3
    assert s["student_share"] == pytest.approx(s["decided_by_student"] / 201)
    assert report.dead_letters_by_kind(data.dead_letters) == {"serialization": 2, "validation": 1}
    last = sorted(report.first_by_id(data.decisions), key=lambda d: d.decided_at)[-1000:]
    assert s["student_share_last_1000"] == pytest.approx(
        sum(d.decided_by == "student" for d in last) / len(last))


def test_sort_messages_routes_records_to_tasks() -> None:
    settings = load_settings(topic_prefix="p.")
    dead = DeadLetter(source_topic="p.tickets", value=b"x", error_kind="serialization",
                      message="bad")
    messages = [
        SimpleNamespace(topic="p.moderation.decisions", value=encode(decision(1, "student"))),
        SimpleNamespace(topic="p.moderation.decisions", value=b"garbage"),
        SimpleNamespace(topic="p.models", value=encode(announcement("v1", 0, 0.9))),
        SimpleNamespace(topic="p.deadletter", value=encode(dead)),
        SimpleNamespace(topic="p.unrelated", value=b"whatever"),
    ]
    data = report.sort_messages(settings, [TICKETS, MODERATION], messages)
    assert len(data["moderation"].decisions) == 1 and data["moderation"].undecodable == 1
    assert len(data["moderation"].announcements) == 1 and not data["tickets"].announcements
    assert len(data["tickets"].dead_letters) == 1 and not data["moderation"].dead_letters


# --- the page -----------------------------------------------------------------------------


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, flags=re.S)


def test_catch_rate_announced_and_measured_from_verdicts() -> None:
    data = scenario()
    # under v2: one self_harm item deferred (caught), one audited and decided as "ok" (missed)
    data.requests += [request(950, "v2"), request(951, "v2", "audit")]
    data.verdicts += [verdict(950, "self_harm", t=700),
                      verdict(951, "self_harm", student="ok", reason="audit", t=701)]
    data.decisions.append(decision(951, "student", "ok", "v2", t=701))
    figures = report.catch_by_version(MODERATION, data.decisions, data.requests, data.verdicts,
                                      data.feedback, data.announcements)
    assert figures["v1"]["announced"] == {"self_harm": pytest.approx(0.9)}
    # each of v2's audits stands for (its student decisions / its audits) decisions
    decided = sum(d.decided_by == "student" and d.model_version == "v2" for d in data.decisions)
    audits = sum(r.reason == "audit" and r.model_version == "v2" for r in data.requests)
    caught = sum(v.label == "self_harm" and v.reason != "audit" and int(v.id[1:]) >= 100
                 for v in data.verdicts)  # deferred under v2 (items 100 on, and 950)
    weight = decided / audits
    assert figures["v2"]["measured"]["self_harm"] == pytest.approx(caught / (caught + weight))
    assert figures[report.NO_VERSION]["measured"] == {"self_harm": 1.0}


def every_plot() -> dict[str, dict[str, Any]]:
    """Figures that fill every chart of the moderation task; the tickets task has none."""
    data = scenario()
    data.feedback.append(Feedback(id="e0", task="moderation", label="self_harm"))
    serving = {"version": "v2", "policy": {
        "accuracy_target": 0.95, "catch_target": 0.95, "floors": {"self_harm": 0.04},
        "floor_basis": {}, "sample": {}, "curve": [
            {"target": t, "coverage": c, "decided_accuracy": t, "system_accuracy": 0.99,
             "teacher_call_fraction": 1 - c, "thresholds": [0.5]} for t, c in
            ((0.9, 0.8), (0.95, 0.7))]}}
    return {"moderation": report.task_figures(data, serving),
            "tickets": report.task_figures(report.TaskData(task=TICKETS))}


def test_page_draws_every_plot(tmp_path: Path) -> None:
    figures = every_plot()
    page_path = report.write_report(figures, tmp_path / "out", json_file=tmp_path / "f.json")
    page = page_path.read_text(encoding="utf-8")
    svgs = _svgs(page)
    # share, per version, calls, cost, audit, recall, catch, curve, confusion, dead
    assert len(svgs) == 10
    for svg in svgs:
        ET.fromstring(svg)  # each one is well-formed XML
    assert "<polyline" in page and "<rect" in page
    assert "Share of decisions by the student over time" in page
    assert "No data yet" in page  # the tickets task has none
    assert "Teacher calls and system accuracy per target" in page and "● 0.95" in page
    assert "Critical catch rate per model version" in page
    saved = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    assert saved["moderation"]["events"] == 200 and saved["tickets"]["events"] == 0


def test_empty_report_says_no_data(tmp_path: Path) -> None:
    figures = {t.name: report.task_figures(report.TaskData(task=t)) for t in (TICKETS, MODERATION)}
    page = report.write_report(figures, tmp_path).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "No data yet" in page
    assert figures["tickets"]["student_share"] is None


def test_text_is_escaped() -> None:
    data = scenario(40)
    data.dead_letters.append(DeadLetter(source_topic="moderation", value=b"x",
                                        error_kind="<script>alert(1)</script>", message="m"))
    page = render_page({"moderation": report.task_figures(data)}, title="a <b> & c",
                       source="<i>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a &lt;b&gt; &amp; c" in page and "<i>" not in page


def test_svg_primitives() -> None:
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(0, 7)[0] == 0 and nice_ticks(0, 7)[-1] >= 7
    line = line_chart("t", [Series("a", [(0, 1), (60, None), (120, 2)])], y_label="y")
    ET.fromstring(line)
    bars = bar_chart("t", ["x", "y"], [Bars("a", [1, None])], y_label="y", x_label="x")
    ET.fromstring(bars)
    grid = heatmap("t", ["a", "b"], [[3, 1], [0, 2]], row_title="r", col_title="c")
    assert ">3<" in grid
    assert "No data yet" in line_chart("t", [Series("a", [])], y_label="y")


# --- arguments and the command ------------------------------------------------------------


def test_bad_arguments(tmp_path: Path) -> None:
    settings = load_settings()
    with pytest.raises(ConfigError, match="unknown task"):
        resolve_tasks(settings, ["nope"])
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        report.check_paths(a_file, None)
    with pytest.raises(ConfigError, match="--json"):
        report.check_paths(tmp_path, tmp_path / "missing" / "f.json")


def test_summary_table_renders() -> None:
    figures = {"moderation": report.task_figures(scenario()),
               "tickets": report.task_figures(report.TaskData(task=TICKETS))}
    table = cli_report.summary_table(figures)
    assert [c.header for c in table.columns] == ["", "moderation", "tickets"]


def _produce(settings: Settings, topic: str, records: list[Any]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    for record in records:
        key = getattr(record, "id", None) or getattr(record, "task", "")
        producer.send(settings.topic(topic), key=key.encode("utf-8"), value=encode(record),
                      timestamp_ms=int(getattr(record, "decided_at", T0).timestamp() * 1000))
    producer.flush()
    producer.close()


@pytest.mark.kafka
def test_report_command_reads_the_topics(kafka_settings: Settings, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = scenario(60)
    data.feedback.append(Feedback(id="e0", task="moderation", label="ok"))
    _produce(kafka_settings, "moderation.decisions", data.decisions)
    _produce(kafka_settings, "moderation.teacher", data.requests)
    _produce(kafka_settings, "moderation.verdicts", data.verdicts)
    _produce(kafka_settings, "moderation.feedback", data.feedback)
    _produce(kafka_settings, "models", data.announcements)
    for name, value in (("KAFKA_BOOTSTRAP", kafka_settings.kafka_bootstrap),
                        ("TOPIC_PREFIX", kafka_settings.topic_prefix)):
        monkeypatch.setenv(f"DISTILLERY_{name}", value)
    from workers.cli.main import app

    out, json_file = tmp_path / "rep", tmp_path / "figures.json"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--json", str(json_file)])
    assert result.exit_code == 0, result.output
    assert "student share" in result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert len(_svgs(page)) == 10 and "<polyline" in page  # 8 charts, confusion, dead letters
    figures = json.loads(json_file.read_text(encoding="utf-8"))
    expected = report.summary(data)
    got = figures["moderation"]
    for key in ("events", "decided_by_student", "decided_by_teacher", "decided_by_fallback",
                "teacher_calls", "models_promoted", "dead_lettered"):
        assert got[key] == expected[key], key
    assert got["student_share"] == pytest.approx(expected["student_share"])
    assert got["teacher_cost"] == pytest.approx(expected["teacher_cost"])
    assert got["audit_accuracy"] == pytest.approx(expected["audit_accuracy"])
    assert set(got["critical_recall_by_version"]) >= {"v1", "v2"}
    assert sum(r["events"] for r in got["share_over_time"]) == 60
    assert figures["tickets"]["events"] == 0
