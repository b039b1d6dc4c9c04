"""A short demo end to end: a student serves and decides before the end, nothing is lost,
and the run removes its topics and model files."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from distillery.settings import Settings, load_settings
from distillery.tasks import load_tasks
from workers.sim.demo import DemoPlan, run_demo

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_short_demo_student_serves_nothing_is_lost_and_it_cleans_up(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka import KafkaAdminClient

    settings: Settings = load_settings(kafka_bootstrap=kafka_bootstrap,
                                       state_dir=tmp_path / "state", web_port=6299,
                                       student_buckets=1 << 16)
    tasks = list(load_tasks(settings).values())
    # n is only a cap: the loop ends each task's stream 400 events after its student first
    # decides; a cap near that point would make the test a race against the machine's speed
    plan = DemoPlan(n=12_000, after_student=400, rate=150.0)
    with open(tmp_path / "live.txt", "w") as live:
        figures = run_demo(settings, tasks, plan, out_dir=tmp_path / "report",
                           keep_running=False, console=Console(file=live))
    print({k: figures[k] for k in ("events", "events_by_task", "decided_by_student",  # type: ignore[literal-required]
                                   "lost", "promotions", "student_share_last_1000",
                                   "seconds_to_first_student_decision_by_task")})
    assert figures["lost"] == 0
    assert figures["model_versions"] >= len(tasks)
    for task in tasks:  # paced by the loop: each task's student decided before its stream ended
        assert figures["seconds_to_first_student_decision_by_task"][task.name] is not None
        assert figures["events_by_task"][task.name] < plan.n
    for task, versions in figures["share_by_version"].items():
        shares = [v["student_share"] for v in versions if v["events"]]
        assert shares[0] == 0.0, task  # cold start: the teacher decides
        assert max(shares[1:]) > 0.3, (task, versions)  # a served version decides a share
    page = Path(figures["report"]).read_text(encoding="utf-8")
    assert page.count("<svg") >= 5
    # it cleaned up: no topic of its prefix on the broker, no model file in its state
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(figures["topic_prefix"])]
    finally:
        admin.close()
    assert figures["cleaned_up"]
    assert not list((tmp_path / "state").rglob("*.onnx"))
