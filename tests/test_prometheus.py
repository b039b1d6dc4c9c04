"""Prometheus for real: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``); a real Prometheus scrapes a running classify, refine and teacher
worker, and a PromQL query over the scraped series gives the student share the workers
report. Every expression of the rules and of the Grafana dashboard runs on that server.

Prometheus and promtool are Debian's ``prometheus`` package, not Python packages:
``.ci/run`` installs it and sets ``DISTILLERY_PROMETHEUS_TESTS=required`` (a missing binary
fails there); elsewhere these tests are skipped and say why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import TICKETS
from schemas.records import Decision
from schemas.serde import decode, encode
from tests.programs import require_programs
from tests.streams.kit import (
    REPO,
    read_all,
    serve_tickets_version,
    start_classify,
    start_worker,
    stop,
)
from workers.runtime.procs import free_port
from workers.sim.synth import generate, labels_of

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "distillery.json"


def _require(binary: str) -> str:
    require_programs(binary, switch="DISTILLERY_PROMETHEUS_TESTS",
                     install="Debian: apt-get install prometheus")
    return str(shutil.which(binary))


def _expressions() -> list[str]:
    """Every PromQL expression of the alert rules and of the dashboard."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return found


def _exposed_names() -> set[str]:
    """Every series name the workers' registries can expose."""
    from streams.metrics import ClassifyMetrics, RefineMetrics
    from workers.teacher.metrics import TeacherMetrics
    from workers.trainer.worker import TrainerMetrics

    names: set[str] = set()
    for registry in (ClassifyMetrics().registry, RefineMetrics("t").registry,
                     TeacherMetrics("t").registry, TrainerMetrics("t").registry):
        for family in registry.collect():
            base = family.name
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def test_rules_and_dashboard_name_only_metrics_the_workers_expose() -> None:
    exposed = _exposed_names()
    named = {n for expr in _expressions() for n in re.findall(r"distillery_[a-z_]+", expr)}
    assert named and named <= exposed, sorted(named - exposed)


def test_promtool_checks_and_unit_tests_the_rules_and_checks_the_compose_config() -> None:
    promtool = _require("promtool")
    for args in (["check", "rules", RULES.name], ["test", "rules", "alerts.test.yml"],
                 ["check", "config", "prometheus.yml"]):  # docker-compose's
        done = subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def _metrics(url: str) -> dict[str, float]:
    """A worker's /metrics as {series with its labels: value}."""
    out = {}
    for line in httpx.get(url, timeout=5.0).text.splitlines():
        if line.startswith("distillery_"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10.0).json()
    assert reply["status"] == "success", (expr, reply)
    return list(reply["data"]["result"])


def _wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.kafka
@pytest.mark.slow
def test_prometheus_scrapes_the_workers_and_computes_their_student_share(
        kafka_settings: Settings, tmp_path: Path) -> None:
    prometheus = _require("prometheus")
    settings = kafka_settings.model_copy(update={"student_buckets": 1 << 16})
    items = generate("tickets", 700, seed=5)
    texts = [item.text_of(TICKETS.text_fields) for item in items]
    serve_tickets_version(settings, texts[:500], labels_of(items[:500]))

    web_port, teacher_port, refine_port, prom_port = (free_port() for _ in range(4))
    classify = start_classify(settings, tmp_path / "classify.log",
                              DISTILLERY_WEB_PORT=str(web_port))
    # the cascade by default: what the first stage hands on goes through the refine worker
    # (no second-stage version yet: it forwards it all to the teacher)
    teacher = start_worker(settings, tmp_path / "teacher.log", "teacher", metrics_port=teacher_port,
                      DISTILLERY_TEACHER_KIND="oracle")
    refine = start_worker(settings, tmp_path / "refine.log", "refine", metrics_port=refine_port)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "classify", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
            {"job_name": "teacher-tickets",
             "static_configs": [{"targets": [f"127.0.0.1:{teacher_port}"]}]},
            {"job_name": "refine-tickets",
             "static_configs": [{"targets": [f"127.0.0.1:{refine_port}"]}]},
        ]}), encoding="utf-8")
    server = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=open(tmp_path / "prometheus.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
        for item in items[500:]:
            producer.send(settings.topic("tickets"), key=item.id.encode(), value=encode(item))
        producer.flush()
        producer.close()
        ids = {item.id for item in items[500:]}
        _wait(lambda: ids <= {decode(m.value, Decision).id
                              for m in read_all(settings, "tickets.routed")},
              180, "every ticket decided, by the student or the teacher")

        worker = _metrics(f"http://127.0.0.1:{web_port}/metrics")
        events = worker['distillery_events_in_total{task="tickets"}']
        by_student = worker['distillery_decided_by_student_total{task="tickets"}']
        assert events == len(ids) and 0 < by_student < events, worker

        share_expr = ('sum by (task) ({__name__=~"distillery_decided_by_student_total|'
                      'distillery_refine_decided_total"}) / sum by (task) '
                      '(distillery_events_in_total)')
        scraped = _wait(lambda: [r for r in _query(base, share_expr)
                                 if float(r["value"][1]) == by_student / events], 60,
                        "Prometheus to hold the workers' final counts")
        assert scraped[0]["metric"] == {"task": "tickets"}

        def teacher_calls_agree() -> bool:  # audits may still be answered: compare afresh
            calls = sum(v for k, v in _metrics(f"http://127.0.0.1:{teacher_port}/metrics")
                        .items() if k.startswith("distillery_teacher_calls_total{"))
            got = _query(base, 'sum(distillery_teacher_calls_total{task="tickets"})')
            return calls > 0 and bool(got) and float(got[0]["value"][1]) == calls

        _wait(teacher_calls_agree, 60, "Prometheus to hold the teacher's call count")
        jobs = {"classify", "teacher-tickets", "refine-tickets"}
        _wait(lambda: {r["metric"]["job"] for r in _query(base, "up == 1")} == jobs, 30,
              f"every job scraped: {jobs}")
        for expr in _expressions():  # each one parses and runs on the real server
            _query(base, expr.replace("$__rate_interval", "1m"))  # as Grafana would
        rules = httpx.get(f"{base}/api/v1/rules", timeout=10.0).json()["data"]["groups"]
        health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
        assert len(health) == len(_expressions()) - sum(
            len(p["targets"]) for p in json.loads(DASHBOARD.read_text())["panels"])
        assert set(health.values()) <= {"ok", "unknown"}, health
    finally:
        server.terminate()
        server.wait(timeout=30)
        codes = (stop(classify), stop(teacher), stop(refine))
    assert codes == (0, 0, 0), (tmp_path / "teacher.log").read_text()[-3000:]
