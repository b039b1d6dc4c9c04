"""The Python client: the README's example, run as written against the real broker, with a
real classify worker and a real teacher worker (an OpenAI-compatible fake LLM) behind it;
and what the client refuses before it ever talks to Kafka."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import distillery.client as client_module
from distillery.client import Client
from distillery.errors import ConfigError, ValidationError
from distillery.settings import Settings, load_settings
from schemas.records import Decision, Feedback, TextItem, Ticket
from schemas.serde import decode
from tests.streams.kit import read_all, start_classify, stop
from tests.streams.teacher_proc import start_teacher
from workers.runtime.procs import free_port
from workers.sim.fake_teacher import FakeTeacherServer

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The first ``python`` block of the docs' Python client page."""
    section = (REPO / "docs" / "reference" / "client.md").read_text(encoding="utf-8")
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the docs' client page has no python example"
    return found.group(1)


def test_the_readme_example_is_short_and_uses_the_three_verbs() -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    for verb in ("produce(", "results(", "feedback("):
        assert verb in code


def test_importing_the_client_does_not_import_kafka() -> None:
    code = "import sys, distillery, distillery.client; print('kafka' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.fixture
def offline_client() -> Iterator[Client]:
    """A client whose broker does not exist: anything that reached Kafka would fail."""
    client = Client(load_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    yield client
    client.close()


def test_the_client_refuses_bad_input_before_it_talks_to_kafka(offline_client: Client) -> None:
    with pytest.raises(ConfigError, match="unknown task 'nope'; known: moderation, tickets"):
        offline_client.produce("nope", {"text": "x"})
    with pytest.raises(ValidationError, match="body: Field required"):
        offline_client.produce("tickets", {"subject": "only a subject"})
    with pytest.raises(ValidationError, match="queue: Extra inputs"):
        offline_client.produce("tickets", {"body": "b", "queue": "billing"})
    with pytest.raises(ValidationError, match="takes ticket records, not text_item"):
        offline_client.produce("tickets", TextItem(id="x", text="hello"))
    with pytest.raises(ConfigError, match="'teleport' is not a label of task tickets"):
        offline_client.feedback("tickets", "x", "teleport")
    assert offline_client._producer is None


# --- on the real broker ------------------------------------------------------------------

def _answer(item: str, labels: list[str]) -> str:
    """The fake LLM: refunds for refund tickets, else the first label."""
    return "refunds" if "refund" in item.lower() else labels[0]


@pytest.mark.kafka
@pytest.mark.slow
def test_the_readme_example_runs_against_the_real_broker(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DISTILLERY_KAFKA_BOOTSTRAP", kafka_settings.kafka_bootstrap)
    monkeypatch.setenv("DISTILLERY_TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setattr(client_module, "_default", None)  # the module's client: this test's
    # Earlier decisions must not fool the example: it waits for its own id.
    earlier = Ticket(id="earlier-1", subject="refund", body="before the client started",
                     metadata={"oracle_label": "refunds"})
    with FakeTeacherServer(default=_answer) as llm:
        classify = start_classify(kafka_settings, tmp_path / "classify.log")
        teacher = start_teacher(kafka_settings, tmp_path / "teacher.log",
                                DISTILLERY_TEACHER_KIND="openai",
                                DISTILLERY_TEACHER_BASE_URL=llm.base_url)
        try:
            with Client() as warmup:
                warmup.produce("tickets", earlier)
                first = next(d for d in warmup.results("tickets", from_beginning=True,
                                                       timeout_s=120) if d.id == "earlier-1")
            assert first.decided_by == "teacher"
            capsys.readouterr()
            exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
            printed = capsys.readouterr().out.split()
            # the module-level functions, with a grouped reader from the start
            other = client_module.produce("tickets", {"id": "module-1", "subject": "refund",
                                                      "body": "the module-level client"})
            grouped = next(d for d in client_module.results(
                "tickets", group=f"{kafka_settings.topic_prefix}svc", timeout_s=120)
                if d.id == other)
            client_module.feedback("tickets", other, "billing", source="agent")
            client_module.default_client().close()
        finally:
            assert stop(teacher) == 0, (tmp_path / "teacher.log").read_text()[-3000:]
            assert stop(classify) == 0, (tmp_path / "classify.log").read_text()[-3000:]
    assert printed[:2] == ["refunds", "teacher"] and float(printed[2]) == 1.0
    assert grouped.label == "refunds" and grouped.task == "tickets"
    decisions = [decode(m.value, Decision) for m in read_all(kafka_settings, "tickets.routed")]
    example_id = next(d.id for d in decisions if d.id not in ("earlier-1", "module-1"))
    feedback = _feedback(kafka_settings)
    assert {(f.id, f.label, f.source) for f in feedback} == {
        (example_id, "refunds", "human"), ("module-1", "billing", "agent")}
    assert all(m.key == m_id.encode() for m, m_id in _keys(kafka_settings))


def _feedback(settings: Settings, timeout_s: float = 30.0) -> list[Feedback]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [decode(m.value, Feedback) for m in read_all(settings, "tickets.feedback")]
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _keys(settings: Settings) -> list[tuple[Any, str]]:
    """(message, record id) of every input and feedback the clients wrote."""
    out: list[tuple[Any, str]] = []
    for topic, cls in (("tickets", Ticket), ("tickets.feedback", Feedback)):
        for message in read_all(settings, topic):
            out.append((message, decode(message.value, cls).id))
    return out


def _decisions(settings: Settings, ids: list[str]) -> None:
    """Decisions written straight to ``tickets.routed``, one partition, in order."""
    from kafka import KafkaProducer

    from schemas.serde import encode

    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    for i in ids:
        record = Decision(id=i, task="tickets", label="refunds", confidence=0.9,
                          decided_by="student", reason="confident")
        producer.send(settings.topic("tickets.routed"), key=b"one", value=encode(record))
    producer.flush()
    producer.close()


@pytest.mark.kafka
def test_a_grouped_reader_that_breaks_out_skips_nothing_and_dedupe_keeps_the_first(
        kafka_settings: Settings) -> None:
    ids = [f"d-{i}" for i in range(10)]
    _decisions(kafka_settings, ids)
    group = f"{kafka_settings.topic_prefix}reader"
    with Client(kafka_settings) as client:
        first = []
        for decision in client.results("tickets", group=group, timeout_s=30):
            first.append(decision.id)
            if len(first) == 3:
                break  # mid-batch: all ten came in one poll
        rest = [d.id for d in client.results("tickets", group=group, timeout_s=3)]
        assert first == ids[:3] and rest == ids[3:]
        _decisions(kafka_settings, ["d-0", "d-10"])  # d-0 again (at-least-once)
        again = [d.id for d in client.results("tickets", group=group, timeout_s=3)]
        assert again == ["d-0", "d-10"]
        plain = [d.id for d in client.results("tickets", from_beginning=True, timeout_s=3)]
        unique = [d.id for d in client.results("tickets", from_beginning=True, timeout_s=3,
                                               dedupe=True)]
    assert plain == ids + ["d-0", "d-10"]
    assert unique == ids + ["d-10"]
