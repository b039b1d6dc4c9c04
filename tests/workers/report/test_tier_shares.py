"""The report's share of decisions per tier: tier 1 (n-grams), tier 2 (``embed-`` versions
of the cascade's refine worker) and the teacher (or its fallback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from distillery.tasks import MODERATION
from schemas.records import Decision
from workers.report import figures as report
from workers.report.page import render_page


def _decision(i: int, decided_by: str, version: str | None) -> Decision:
    return Decision(id=f"d{i}", task="moderation", label="ok", confidence=0.9,
                    decided_by=decided_by, model_version=version,  # type: ignore[arg-type]
                    teacher_id="t" if decided_by == "teacher" else None,
                    reason="confident" if decided_by == "student" else "low_confidence",
                    decided_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i))


def test_each_tier_share_of_decisions_in_figures_and_page() -> None:
    kinds = (["student:v0003"] * 6 + ["student:embed-v0002"] * 3 + ["teacher:"] * 2
             + ["fallback:v0003"])
    decisions = [_decision(i, *k.split(":")) for i, k in enumerate(kinds)]
    decisions = [d.model_copy(update={"model_version": d.model_version or None})
                 for d in decisions]
    data = report.TaskData(task=MODERATION, decisions=decisions)
    f = report.task_figures(data)
    assert f["tier_shares"] == {"tier1": 6 / 12, "tier2": 3 / 12, "teacher": 3 / 12}
    assert f["student_share"] == 9 / 12  # both tiers are the student
    rows = f["share_over_time"]
    assert sum(r["tier2"] for r in rows) == 3 and sum(r["events"] for r in rows) == 12
    page = render_page({"moderation": f})
    assert "decided by tier 1 / tier 2 / teacher" in page and "tier 2 (embeddings)" in page
    assert "50% / 25% / 25%" in page

    alone = report.task_figures(report.TaskData(task=MODERATION, decisions=decisions[:6]))
    assert alone["tier_shares"] == {"tier1": 1.0, "tier2": 0.0, "teacher": 0.0}
    assert "tier 2 (embeddings)" not in render_page({"moderation": alone})
