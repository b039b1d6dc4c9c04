"""The HTML page of ``distillery report``: summary cards, charts and tables per task.

``render_page`` takes the figures of ``workers.report.task_figures`` (keyed by task name)
and returns one self-contained page: inline CSS, inline SVG from ``workers.report.svg``,
no script, every text escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from workers.report.svg import (
    PALETTE,
    Bars,
    Series,
    bar_chart,
    empty_chart,
    heatmap,
    line_chart,
    number,
    percent,
)

CSS = """
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.5 system-ui,-apple-system,'Segoe UI',
Roboto,sans-serif}
header{background:#111827;color:#f9fafb;padding:22px 32px}
header h1{margin:0;font-size:24px}header p{margin:4px 0 0;color:#d1d5db;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
section.task{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08);
padding:20px 24px;margin:20px 0}
h2{margin:0 0 14px;font-size:20px}h3{margin:18px 0 8px;font-size:15px;color:#374151}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:#f9fafb;border:1px solid #e5e7eb;border-radius:10px;padding:10px 12px}
.card .v{font-size:22px;font-weight:650;overflow-wrap:anywhere}
.card .k{color:#6b7280;font-size:12px}.card.pair{grid-column:span 2}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px;
margin-top:16px}
.chart{border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;background:#fff}
.chart svg{display:block;width:100%;height:auto}
.wide{grid-column:1/-1;display:flex;justify-content:center}.wide svg{max-width:752px}
.note{color:#6b7280;font-size:12px;margin:6px 2px}
.empty{background:#fffbeb;border:1px solid #fde68a;border-radius:10px;padding:14px 18px;
color:#92400e}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
td,th{border-bottom:1px solid #e5e7eb;padding:4px 12px;text-align:left}
th{color:#6b7280;font-weight:600}
"""


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _mid(row: dict[str, Any]) -> float:
    return (_stamp(row["start"]) + _stamp(row["end"])) / 2


def _fmt(value: Any, kind: str = "n") -> str:
    if value is None:
        return "–"
    if kind == "%":
        return percent(float(value)) if value >= 0.1 else f"{float(value) * 100:.1f}%"
    if kind == "$":
        return f"${float(value):,.4g}" if abs(float(value)) < 1000 else f"${float(value):,.0f}"
    return f"{value:,}" if isinstance(value, int) else number(float(value))


def _cards(f: dict[str, Any]) -> str:
    baseline = f["teacher_only_cost"]
    money = " (notional)" if f.get("cost_is_notional") else ""
    saving = f["saving"] / baseline if baseline else None
    items = [
        ("events decided", _fmt(f["events"])),
        ("by student / teacher / fallback",
         f"<span style='font-size:17px'>{f['decided_by_student']:,} / "
         f"{f['decided_by_teacher']:,} / {f['decided_by_fallback']:,}</span>"),
        ("student share", _fmt(f["student_share"], "%")),
        ("decided by tier 1 / tier 2 / teacher", _tier_shares(f)),
        ("student share, last 1000", _fmt(f["student_share_last_1000"], "%")),
        ("teacher calls", _fmt(f["teacher_calls"])),
        ("teacher cost" + money, _fmt(f["teacher_cost"], "$")),
        ("teacher-only baseline" + money, _fmt(baseline, "$")),
        ("saving", _fmt(saving, "%")),
        ("audit accuracy", _fmt(f["audit_accuracy"], "%") + f" <small>({f['audits']:,})</small>"),
        ("models promoted", _fmt(f["models_promoted"])),
        ("dead letters", _fmt(f["dead_lettered"])),
    ]
    cells = "".join(f"<div class='{'card pair' if ' / ' in key else 'card'}'>"
                    f"<div class='v'>{value}</div><div class='k'>{escape(key)}</div></div>"
                    for key, value in items)
    return f"<div class='cards'>{cells}</div>"


def _tier_shares(f: dict[str, Any]) -> str:
    """Each tier's share of the decisions (tier 2: the cascade's ``embed-`` versions)."""
    shares = f.get("tier_shares") or {}
    return ("<span style='font-size:17px'>" + " / ".join(
        _fmt(shares.get(t), "%") for t in ("tier1", "tier2", "teacher")) + "</span>")


def _markers(f: dict[str, Any]) -> list[tuple[float, str]]:
    return [(_stamp(m["at"]), f"{m['action']} {m['version']}") for m in f["models"]]


def _share_chart(f: dict[str, Any]) -> str:
    rows = f["share_over_time"]
    series = [
        Series("student", [(_mid(r), r["student_share"]) for r in rows], PALETTE[0], dots=True),
        Series("teacher", [(_mid(r), r["teacher"] / r["events"] if r["events"] else None)
                           for r in rows], PALETTE[1], dashed=True),
    ]
    if any(r.get("tier2") for r in rows):  # the cascade: tier 2's part of the student's
        series.append(Series("tier 2 (embeddings)", [(_mid(r), r["tier2_share"]) for r in rows],
                             PALETTE[2], dots=True))
    return line_chart("Share of decisions by the student over time", series,
                      y_label="share of decisions", y_fmt=percent, y_range=(0.0, 1.0),
                      markers=_markers(f))


def _version_chart(f: dict[str, Any]) -> str:
    rows = f["share_by_version"]
    return bar_chart("Student share per model version", [r["version"] for r in rows],
                     [Bars("student share", [r["student_share"] for r in rows], PALETTE[0])],
                     y_label="share of decisions", x_label="student version", y_fmt=percent,
                     y_range=(0.0, 1.0))


def _calls_chart(f: dict[str, Any]) -> str:
    rows = f["teacher_calls_per_minute"]
    width = rows[0]["minutes"] if rows else 1
    series = [Series("teacher calls", [(_stamp(r["start"]) + 30 * width, r["per_minute"])
                                       for r in rows], PALETTE[1], dots=len(rows) < 40)]
    return line_chart("Teacher calls per minute", series, y_label="calls / minute")


def _cost_chart(f: dict[str, Any]) -> str:
    rows = f["cost_over_time"]
    series = [
        Series("teacher cost (actual)", [(_stamp(r["at"]), r["teacher_cost"]) for r in rows],
               PALETTE[1]),
        Series("teacher-only baseline", [(_stamp(r["at"]), r["teacher_only_cost"]) for r in rows],
               PALETTE[8], dashed=True),
    ]
    if not f["teacher_calls"]:
        return empty_chart("Cumulative cost vs teacher-only baseline", "No teacher calls yet")
    title = "Cumulative cost vs teacher-only baseline"
    if f.get("cost_is_notional"):
        title += " (notional price per call)"
    return line_chart(title, series, y_label="cumulative cost ($)")


def _audit_chart(f: dict[str, Any]) -> str:
    rows = f["audit_accuracy_over_time"]
    series = [Series("audit accuracy", [(_mid(r), r["accuracy"]) for r in rows], PALETTE[2],
                     dots=True)]
    if not rows:
        return empty_chart("Audit accuracy over time", "No audit verdicts yet")
    return line_chart("Audit accuracy over time (teacher agrees with student)", series,
                      y_label="accuracy", y_fmt=percent, y_range=(0.0, 1.0), markers=_markers(f))


def _critical_bars(f: dict[str, Any], by_version: dict[str, Any]) -> list[Bars]:
    """Per critical label, its announced and measured figure in each version's column."""
    bars = []
    for i, label in enumerate(f["critical_labels"]):
        color = PALETTE[(3 + 2 * i) % len(PALETTE)]
        for kind, shade in (("announced", color), ("measured", color + "88")):
            bars.append(Bars(f"{label} ({kind})",
                             [by_version[v][kind].get(label) for v in by_version], shade))
    return bars


def _recall_chart(f: dict[str, Any]) -> str:
    title = "Critical-slice recall per model version"
    by_version = f["critical_recall_by_version"]
    if not f["critical_labels"]:
        return empty_chart(title, "This task has no critical labels")
    return bar_chart(title, list(by_version), _critical_bars(f, by_version), y_label="recall",
                     x_label="model version", y_fmt=percent, y_range=(0.0, 1.0))


def _catch_chart(f: dict[str, Any]) -> str:
    title = "Critical catch rate per model version"
    by_version = f.get("catch_rate_by_version") or {}
    if not f["critical_labels"]:
        return empty_chart(title, "This task has no critical labels")
    if not by_version:
        return empty_chart(title, "No version with a catch rate yet")
    return bar_chart(title, list(by_version), _critical_bars(f, by_version),
                     y_label="catch rate", x_label="model version", y_fmt=percent,
                     y_range=(0.0, 1.0))


def _curve_chart(f: dict[str, Any]) -> str:
    title = "Teacher calls and system accuracy per target"
    policy = f.get("policy") or {}
    curve = policy.get("curve") or []
    if not curve:
        return empty_chart(title, "The serving version has no calibrated curve")
    names = [("● " if abs(p["target"] - (policy.get("accuracy_target") or -1)) < 1e-9 else "")
             + f"{p['target']:g}" for p in curve] + ["teacher only"]
    return bar_chart(
        f"{title} ({policy.get('version')})", names,
        [Bars("teacher calls", [p["teacher_call_fraction"] for p in curve] + [1.0], PALETTE[1]),
         Bars("system accuracy", [p["system_accuracy"] for p in curve] + [1.0], PALETTE[0])],
        y_label="share",
        x_label="accuracy target of the decided part, on held-out verdicts (● chosen)",
        y_fmt=percent, y_range=(0.0, 1.0))


def _confusion_chart(f: dict[str, Any]) -> str:
    c = f["confusion"]
    title = {"feedback": "Confusion matrix: decisions against feedback",
             "audit": "Confusion matrix: teacher against student on audited items"}.get(
                 c["source"], "Confusion matrix")
    if c["source"] is None:
        return empty_chart(title, "No feedback or audit verdicts yet")
    return heatmap(title, c["labels"], c["matrix"], row_title=c["rows"], col_title=c["cols"])


def _dead_chart(f: dict[str, Any]) -> str:
    kinds = f["dead_letters_by_kind"]
    if not kinds:
        return empty_chart("Dead letters by error kind", "No dead letters")
    return bar_chart("Dead letters by error kind", list(kinds),
                     [Bars("dead letters", list(kinds.values()), PALETTE[4])],
                     y_label="records", x_label="error kind")


def _models_table(f: dict[str, Any]) -> str:
    if not f["models"]:
        return "<p class='note'>No model announced yet.</p>"
    rows = "".join(
        f"<tr><td>{escape(m['at'])}</td><td>{escape(m['action'])}</td>"
        f"<td>{escape(m['version'])}</td><td>{_fmt(m['accuracy'], '%')}</td>"
        f"<td>{_fmt(m['macro_f1'], '%')}</td></tr>" for m in f["models"])
    return ("<table><tr><th>announced (UTC)</th><th>action</th><th>version</th>"
            f"<th>accuracy</th><th>macro-F1</th></tr>{rows}</table>")


def has_data(f: dict[str, Any]) -> bool:
    return bool(f["events"] or f["teacher_calls"] or f["models"] or f["dead_lettered"]
                or f["feedback"])


def _task_section(name: str, f: dict[str, Any]) -> str:
    head = f"<section class='task'><h2>Task: {escape(name)}</h2>"
    if not has_data(f):
        return head + ("<div class='empty'>No data yet: nothing has been decided, sent to the "
                       "teacher or announced for this task.</div></section>")
    charts = [_share_chart(f), _version_chart(f), _calls_chart(f), _cost_chart(f),
              _audit_chart(f), _recall_chart(f), _catch_chart(f), _curve_chart(f)]
    grid = "".join(f"<div class='chart'>{c}</div>" for c in charts)
    grid += f"<div class='chart wide'>{_confusion_chart(f)}</div>"
    grid += f"<div class='chart'>{_dead_chart(f)}</div>"
    notes = ("Recall is as announced by the trainer (held-out metrics) and as measured on "
             "decisions made while the version served, against feedback. A critical label's "
             "catch rate is the share of its items that reached the teacher or were decided "
             "correctly: as announced, and as measured from the verdicts (audits weighted "
             "for the decisions they stand for). The curve is the serving version's, on its "
             "held-out verdicts; the teacher alone answers everything. Costs are the "
             "teacher's reported costs; the baseline sends every event to the teacher at the "
             "mean observed cost per call.")
    if f["undecodable"]:
        notes += f" {f['undecodable']:,} undecodable records were skipped."
    return (head + _cards(f) + f"<div class='charts'>{grid}</div>"
            + f"<p class='note'>{escape(notes)}</p><h3>Models</h3>{_models_table(f)}</section>")


def render_page(figures: dict[str, dict[str, Any]], *, title: str = "distillery report",
                source: str = "") -> str:
    """The whole report as one self-contained HTML page."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sub = f"generated {generated}" + (f" · {source}" if source else "")
    body = ""
    if not any(has_data(f) for f in figures.values()):
        body += ("<div class='empty'><strong>No data yet.</strong> The topics hold no "
                 "decisions, verdicts or model announcements. Start the system "
                 "(<code>distillery up</code> or <code>distillery demo</code>) and produce "
                 "some events, then run <code>distillery report</code> again.</div>")
    body += "".join(_task_section(name, f) for name, f in figures.items())
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p>{escape(sub)}</p></header>"
            f"<main>{body}</main></body></html>")
