"""Tickets with e-mails, phones and card numbers through the real classify, teacher and
trainer processes on the real broker: none of those strings reaches the teacher's HTTP
bodies, any topic the workers write, or any file of the state folder (the training store
among them), and the classify worker's /metrics counts what it took out."""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from distillery.settings import Settings
from distillery.tasks import TICKETS
from schemas.records import Decision, Ticket
from schemas.serde import decode, encode
from tests.distillery.pii_corpus import MAKERS
from tests.streams.kit import (
    read_all,
    start_classify,
    start_trainer,
    stop,
    wait_for_stored_verdicts,
    worker_env,
)
from tests.streams.teacher_proc import start_teacher
from workers.runtime.procs import free_port
from workers.sim.fake_teacher import FakeTeacherServer

N = 40
KINDS = ("email", "phone", "card")


def _tickets() -> tuple[list[Ticket], list[str]]:
    rng = random.Random(5)
    tickets, secrets = [], []
    for i in range(N):
        email, phone, card = (MAKERS[k](rng) for k in KINDS)
        secrets += [email, phone, card]
        tickets.append(Ticket(
            id=f"pii-{i}", subject=f"Refund to card {card}",
            body=f"Hi, I am {email}; call me on {phone} about the double charge.",
            metadata={"oracle_label": "refunds", "reply_to": email}))
    return tickets, secrets


def _forms(secret: str) -> list[str]:
    """The secret as written, and its digits alone where it is a number."""
    digits = re.sub(r"\D", "", secret)
    return [secret, digits] if len(digits) >= 7 else [secret]



@pytest.mark.kafka
@pytest.mark.slow
def test_no_personal_data_leaves_the_classify_worker(kafka_settings: Settings,
                                                     tmp_path: Path) -> None:
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text('[tasks.tickets]\nredact = ["email", "phone", "card"]\n'
                          'tiers = ["ngram"]\n', encoding="utf-8")  # no refine worker here
    tickets, secrets = _tickets()
    web_port = free_port()
    extra = {"DISTILLERY_TASKS_FILE": str(tasks_file), "DISTILLERY_REFRESH_FIRST_VERDICTS": "20"}
    with FakeTeacherServer(default=lambda item, labels: "refunds") as llm:
        classify = start_classify(kafka_settings, tmp_path / "classify.log",
                                  DISTILLERY_WEB_PORT=str(web_port), **extra)
        teacher = start_teacher(kafka_settings, tmp_path / "teacher.log",
                                DISTILLERY_TEACHER_KIND="openai",
                                DISTILLERY_TEACHER_BASE_URL=llm.base_url, **extra)
        trainer = start_trainer(worker_env(kafka_settings, DISTILLERY_METRICS_PORT="0",
                                           **extra), tmp_path / "trainer.log")
        try:
            producer = KafkaProducer(**kafka_settings.kafka_python_kwargs())
            for ticket in tickets:
                producer.send(kafka_settings.topic("tickets"), encode(ticket),
                              key=ticket.id.encode())
            producer.flush()
            producer.close()
            decided = _wait_for_decisions(kafka_settings, N, [classify, teacher, trainer])
            metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text
            wait_for_stored_verdicts(kafka_settings, N)
        finally:
            codes = [stop(p) for p in (trainer, teacher, classify)]
        bodies = b"\n".join(llm.bodies)
    assert codes == [0, 0, 0], [(tmp_path / f).read_text()[-2000:]
                                for f in ("trainer.log", "teacher.log", "classify.log")]
    assert {d.id for d in decided} == {t.id for t in tickets}
    assert len(llm.bodies) >= N and b"[EMAIL]" in bodies and b"[CARD]" in bodies
    # structured answers: the label is asked for as an enum of the task's labels
    schema = json.loads(llm.bodies[0])["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == TICKETS.label_names

    topics = _written_topics(kafka_settings)
    assert {"tickets.teacher", "tickets.verdicts", "tickets.routed"} <= set(topics)
    topic_bytes = {t: b"\n".join((m.value or b"") + (m.key or b"")
                                 for m in read_all(kafka_settings, t)) for t in topics}
    files = {p: p.read_bytes() for p in kafka_settings.state_dir.rglob("*") if p.is_file()}
    assert any(p.parent.name == "trainer" for p in files)  # the training store is in there
    leaks = [(secret, where) for secret in secrets for form in _forms(secret)
             for where, data in [("teacher HTTP bodies", bodies), *topic_bytes.items(),
                                 *((str(p), d) for p, d in files.items())]
             if form.encode() in data]
    assert not leaks, leaks[:5]
    for kind, count in (("email", 2 * N), ("phone", N), ("card", N)):
        assert f'distillery_redactions_total{{kind="{kind}",task="tickets"}} {count}.0' \
            in metrics, kind


def _wait_for_decisions(settings: Settings, n: int, procs: list[subprocess.Popen[bytes]],
                        timeout_s: float = 180) -> list[Decision]:
    deadline = time.monotonic() + timeout_s
    while True:
        decided = [decode(m.value, Decision) for m in read_all(settings, "tickets.routed")]
        if len({d.id for d in decided}) >= n:
            return decided
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise AssertionError(f"{len(decided)} of {n} decided")
        time.sleep(1.0)



def _written_topics(settings: Settings) -> list[str]:
    """Every topic of this test's prefix but the input topic (the user wrote that one)."""
    admin = KafkaAdminClient(**settings.kafka_python_kwargs())
    try:
        names = admin.list_topics()
    finally:
        admin.close()
    prefix = settings.topic_prefix
    return sorted(n.removeprefix(prefix) for n in names
                  if n.startswith(prefix) and n != settings.topic("tickets"))
