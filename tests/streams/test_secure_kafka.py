"""The whole loop on ``broker start --secure``: SASL_SSL, a SCRAM user per worker role, ACLs
per role. Classify, teacher and trainer each connect as their own role and every event is
decided; a wrong password is refused; a role cannot read a topic it has no ACL for; and no
password or API key shows in any log, CLI output, dead letter or state file of the run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from distillery.client import Client
from distillery.errors import BrokerError
from distillery.settings import Settings, load_settings
from distillery.tasks import load_tasks
from schemas.records import Ticket
from streams.topics import create_topics
from tests.streams.kit import (
    REPO,
    read_all,
    start_classify,
    start_trainer,
    stop,
    wait_for_stored_verdicts,
    worker_env,
)
from tests.streams.teacher_proc import start_teacher
from workers.runtime.broker import EmbeddedBroker
from workers.runtime.procs import free_port
from workers.runtime.secure import grant_roles
from workers.sim.fake_teacher import FakeTeacherServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
N = 30
API_KEY = f"sk-test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    settings = load_settings(state_dir=tmp_path_factory.mktemp("secure-broker"),
                             broker_port=free_port(), broker_controller_port=free_port())
    broker = EmbeddedBroker(settings, secure=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _as(broker: EmbeddedBroker, base: Settings, role: str, password: str | None = None
        ) -> Settings:
    assert broker.secure is not None
    return broker.secure.role_settings(base, role, password)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_loop_runs_with_a_role_each_and_keeps_its_secrets(
        secure_broker: EmbeddedBroker, tmp_path: Path) -> None:
    assert secure_broker.secure is not None
    files = secure_broker.secure
    base = secure_broker.client_settings("admin").model_copy(update={
        "topic_prefix": f"s{uuid.uuid4().hex[:8]}.", "registry_root": tmp_path / "registry",
        "state_dir": tmp_path / "state"})
    create_topics(base)
    grant_roles(base, list(load_tasks(base).values()))

    def env_of(role: str, **extra: str) -> dict[str, str]:
        env = worker_env(base, DISTILLERY_CONFIG=str(files.role_config(role)), **extra)
        env.pop("DISTILLERY_KAFKA_BOOTSTRAP")  # the role's file says where, and how
        return env

    with FakeTeacherServer(default=lambda item, labels: "refunds") as llm:
        web_port = free_port()
        logs = {name: tmp_path / f"{name}.log" for name in ("classify", "teacher", "trainer")}
        classify = start_classify(base, logs["classify"], **_only_new(
            env_of("classify", DISTILLERY_WEB_PORT=str(web_port))))
        teacher = start_teacher(base, logs["teacher"], **_only_new(env_of(
            "teacher", DISTILLERY_TEACHER_KIND="openai", DISTILLERY_TEACHER_BASE_URL=llm.base_url,
            DISTILLERY_TEACHER_API_KEY=API_KEY)))
        trainer = start_trainer(env_of("trainer", DISTILLERY_METRICS_PORT="0",
                                       DISTILLERY_REFRESH_FIRST_VERDICTS="20"), logs["trainer"])
        try:
            client = _as(secure_broker, base, "client")  # the client library, as "client"
            with Client(client) as library:
                for i in range(N):
                    library.produce("tickets", Ticket(id=f"s-{i}", subject="refund please",
                                                      body=f"ticket {i}: charged twice"))
                library.flush()
                producer = KafkaProducer(**client.kafka_python_kwargs())
                producer.send(base.topic("tickets"), b"not a ticket").get(30)  # a dead letter
                producer.close()
                decided = []
                for decision in library.results("tickets", from_beginning=True, timeout_s=180):
                    decided.append(decision)
                    if len({d.id for d in decided}) == N:
                        break
                with pytest.raises(BrokerError, match="refused"):  # no ACL to write there
                    library._send("tickets.verdicts", "x", b"x")
                    library.flush()
                with pytest.raises(BrokerError, match="refused"):  # feedback is not the client's
                    library.feedback("tickets", "s-0", "billing")
                    library.flush()
            with Client(_as(secure_broker, base, "feedback")) as corrections:
                corrections.feedback("tickets", "s-1", "refunds")
                corrections.flush()
            wait_for_stored_verdicts(base, N)
            cli_env = env_of("admin")
            outputs = {"status": _cli(cli_env, "status"), "topics": _cli(cli_env, "topics", "list")}
            wrong = _cli({**cli_env, "DISTILLERY_KAFKA_SASL_PASSWORD": "not-the-password"},
                         "topics", "list")
        finally:
            codes = {name: stop(p) for name, p in
                     (("trainer", trainer), ("teacher", teacher), ("classify", classify))}
        bodies = b"\n".join(llm.bodies)
        auth = set(llm.auth)
    texts = {name: path.read_text(errors="replace") for name, path in logs.items()}
    assert set(codes.values()) == {0}, {n: texts[n][-2000:] for n in codes}
    assert {d.id for d in decided} == {f"s-{i}" for i in range(N)}
    assert auth == {f"Bearer {API_KEY}"}  # the key was used, where it belongs
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert base.topic("tickets.verdicts") in outputs["topics"].stdout

    # a wrong password: refused, an error line that names the user (after kafka-python's own
    # log lines, which say "invalid credentials"), and the broker says why
    last = wrong.stderr.strip().splitlines()[-1]
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr[-2000:]
    assert last.startswith("error: cannot reach Kafka") and "'admin'" in last, last
    assert any("Failed authentication" in line and "invalid credentials" in line
               for line in secure_broker.logs(2000))

    # no ACL, no read: classify does not read verdicts, teacher does not read the inputs
    for role, topic in (("classify", "tickets.verdicts"), ("teacher", "tickets"),
                        ("client", "tickets.teacher"), ("trainer", "tickets"),
                        ("feedback", "tickets.routed")):
        with pytest.raises(TopicAuthorizationFailedError):
            _read_one(_as(secure_broker, base, role), base.topic(topic))
    # groups: the client joins its own (<prefix>client-*), never a worker's, so it cannot
    # hold a worker group's partitions
    client = _as(secure_broker, base, "client")
    assert _join(client, f"{base.topic_prefix}client-dash", base.topic("tickets.routed")) >= 0
    for group in ("distillery-classify", "distillery-teacher-tickets", "anything"):
        with pytest.raises(GroupAuthorizationFailedError):
            _join(client, base.topic_prefix + group, base.topic("tickets.routed"))
    with pytest.raises(KafkaError):
        _read_one(_as(secure_broker, base, "trainer", "not-the-password"),
                  base.topic("tickets.verdicts"))

    # the secrets: in no log, CLI output, dead letter, HTTP body or state file
    dead = b"\n".join((m.value or b"") for m in read_all(base, "deadletter"))
    assert b"not a ticket" in dead
    secrets = [API_KEY, *files.users().values()]
    seen = {**texts, "broker log": "\n".join(secure_broker.logs(100_000)),
            **{f"cli {n}": d.stdout + d.stderr for n, d in {**outputs, "wrong": wrong}.items()},
            "dead letters": dead.decode(errors="replace"),
            "teacher bodies": bodies.decode(errors="replace"),
            **{str(p): p.read_bytes().decode(errors="replace")
               for p in base.state_dir.rglob("*") if p.is_file()}}
    leaks = [(where, s[:12]) for where, text in seen.items() for s in secrets if s in text]
    assert not leaks, leaks


def _only_new(env: dict[str, str]) -> dict[str, str]:
    """The ``DISTILLERY_*`` part of an environment, as the kit's ``**extra``."""
    return {k: v for k, v in env.items() if k.startswith("DISTILLERY_")}


def _join(settings: Settings, group: str, topic: str) -> int:
    """Join ``group`` on ``topic`` and poll once; the number of records seen."""
    consumer = KafkaConsumer(topic, **settings.kafka_python_kwargs(), group_id=group,
                             enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        return sum(len(batch) for batch in consumer.poll(timeout_ms=5000).values())
    finally:
        consumer.close()


def _read_one(settings: Settings, topic: str) -> list[object]:
    consumer = KafkaConsumer(**settings.kafka_python_kwargs(), group_id=None,
                             consumer_timeout_ms=3000, request_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        return list(consumer)
    finally:
        consumer.close()

