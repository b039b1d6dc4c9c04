"""``distillery up --classify-workers N --teacher-workers M --refine-workers R``: the children
it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillery.settings import load_settings
from distillery.tasks import get_task
from workers.runtime.stack import children


def test_n_classify_workers_each_with_their_own_web_port(tmp_path: Path) -> None:
    s = load_settings(state_dir=tmp_path, web_port=7100)
    tasks = [get_task(s, "tickets"), get_task(s, "moderation")]
    kids = children(s, tasks, tmp_path / "logs", classify_workers=3)
    classify = [c for c in kids if c.argv[:2] == ["worker", "classify"]]
    assert [c.name for c in classify] == ["classify-0", "classify-1", "classify-2"]
    assert [c.env["DISTILLERY_WEB_PORT"] for c in classify] == ["7100", "7101", "7102"]
    assert len({c.log_file for c in kids}) == len(kids)
    # every classify worker reads every task (one group: Kafka shares the partitions out)
    assert all(c.argv.count("--task") == 2 for c in classify)
    # one trainer per task, whatever N
    assert sorted(c.name for c in kids if "trainer" in c.argv) == [
        "trainer-moderation", "trainer-tickets"]
    assert [c.name for c in children(s, tasks, tmp_path)][:1] == ["classify"]
    with pytest.raises(ValueError):
        children(s, tasks, tmp_path, classify_workers=0)


def test_n_teacher_workers_per_task_in_one_group_with_metrics_off(tmp_path: Path) -> None:
    s = load_settings(state_dir=tmp_path)
    tasks = [get_task(s, "tickets"), get_task(s, "moderation")]
    kids = children(s, tasks, tmp_path / "logs", teacher_workers=2)
    teachers = [c for c in kids if c.argv[:2] == ["worker", "teacher"]]
    assert sorted(c.name for c in teachers) == [
        "teacher-moderation-0", "teacher-moderation-1", "teacher-tickets-0", "teacher-tickets-1"]
    # the same command line: one group per task (the ledger shares budget and memory)
    assert {tuple(c.argv) for c in teachers if "tickets" in c.argv} == {
        ("worker", "teacher", "--task", "tickets")}
    assert {c.env["DISTILLERY_METRICS_PORT"] for c in teachers} == {"0"}
    assert len({c.log_file for c in kids}) == len(kids)
    assert "teacher-tickets" in [c.name for c in children(s, tasks, tmp_path)]
    with pytest.raises(ValueError):
        children(s, tasks, tmp_path, teacher_workers=0)


def test_the_built_in_tasks_run_the_cascade_with_r_refine_workers_each(tmp_path: Path) -> None:
    from distillery.tasks import DEFAULT_TIERS

    s = load_settings(state_dir=tmp_path)
    tasks = [get_task(s, "tickets"), get_task(s, "moderation")]
    assert all(t.tiers == list(DEFAULT_TIERS) == ["ngram", "embed"] for t in tasks)
    kids = children(s, tasks, tmp_path / "logs", refine_workers=2)
    refine = [c for c in kids if c.argv[:2] == ["worker", "refine"]]
    assert sorted(c.name for c in refine) == [
        "refine-moderation-0", "refine-moderation-1", "refine-tickets-0", "refine-tickets-1"]
    assert {c.env["DISTILLERY_METRICS_PORT"] for c in refine} == {"0"}
    assert len({c.log_file for c in kids}) == len(kids)
    assert "refine-tickets" in [c.name for c in children(s, tasks, tmp_path)]
    # a task on tier 1 alone gets none
    alone = tasks[0].model_copy(update={"tiers": ["ngram"]})
    assert not [c for c in children(s, [alone], tmp_path) if "refine" in c.argv]
    with pytest.raises(ValueError):
        children(s, tasks, tmp_path, refine_workers=0)


def test_up_secure_starts_each_worker_as_its_own_role(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from workers.runtime.secure import SecureFiles

    roles = SecureFiles(tmp_path / "secure")
    admin = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:9999",
                          kafka_security_protocol="SASL_SSL",
                          kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="admin",
                          kafka_sasl_password=SecretStr("admin-secret"),
                          kafka_ssl_cafile=tmp_path / "ca.pem")
    tasks = [get_task(admin, "tickets")]
    kids = children(admin, tasks, tmp_path / "logs", roles=roles)
    by_name = {c.name: c for c in kids}
    for name, role in (("classify", "classify"), ("teacher-tickets", "teacher"),
                       ("trainer-tickets", "trainer")):
        env = by_name[name].env
        assert env["DISTILLERY_CONFIG"] == str(tmp_path / "secure" / f"{role}.toml")
        assert not any(k.startswith("DISTILLERY_KAFKA_") for k in env), name
        assert "admin-secret" not in env.values()
    plain = children(admin, tasks, tmp_path / "logs")
    assert plain[0].env["DISTILLERY_KAFKA_SASL_PASSWORD"] == "admin-secret"
