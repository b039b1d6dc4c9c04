"""A short demo end to end: the student takes over across versions, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from distillery.settings import Settings, load_settings
from distillery.tasks import load_tasks
from workers.sim.demo import run_demo

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_short_demo_student_share_grows_and_nothing_is_lost(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings: Settings = load_settings(kafka_bootstrap=kafka_bootstrap,
                                       state_dir=tmp_path / "state", web_port=6299,
                                       student_buckets=1 << 16)
    tasks = list(load_tasks(settings).values())
    figures = run_demo(settings, tasks, n=1500, rate=100.0, out_dir=tmp_path / "report",
                       keep_running=False, console=Console(file=open(tmp_path / "live.txt", "w")))
    print({k: figures[k] for k in ("events", "decided_by_student", "decided_by_teacher",
                                   "lost", "model_versions", "student_share_last_1000")})
    assert figures["events"] == 3000 and figures["lost"] == 0
    assert figures["model_versions"] >= 2
    for task, versions in figures["share_by_version"].items():
        shares = [v["student_share"] for v in versions if v["events"]]
        assert shares[0] == 0.0, task  # cold start: the teacher decides
        assert max(shares[1:]) > 0.3, (task, versions)  # a later version decides a share
    assert figures["student_share_last_1000"] > 0.3
    page = Path(figures["report"]).read_text(encoding="utf-8")
    assert page.count("<svg") >= 5
