"""The embedded broker: data survives stop/start; clear errors for taken ports and missing tools."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from distillery.errors import BrokerError
from distillery.settings import load_settings
from schemas.records import Ticket
from streams.topics import create_topics
from workers.records.transfer import consume_topic, produce_file
from workers.runtime import broker as broker_module
from workers.runtime.broker import EmbeddedBroker
from workers.runtime.procs import free_port


def _own_broker(tmp_path: Path) -> EmbeddedBroker:
    settings = load_settings(
        state_dir=tmp_path / "state",
        broker_port=free_port(),
        broker_controller_port=free_port(),
        topic_prefix="restart.",
    )
    bootstrap = f"127.0.0.1:{settings.broker_port}"
    return EmbeddedBroker(settings.model_copy(update={"kafka_bootstrap": bootstrap}))


@pytest.mark.kafka
@pytest.mark.slow
def test_events_survive_broker_stop_and_start(tmp_path: Path) -> None:
    broker = _own_broker(tmp_path)
    s = broker.settings
    assert broker.start() is True
    try:
        assert broker.start() is False  # already running: says so, succeeds
        create_topics(s)
        lines = "".join(
            json.dumps({"id": f"e{i}", "subject": "s", "body": f"body {i}"}) + "\n"
            for i in range(20)
        )
        summary = produce_file(s, s.topic("tickets"), io.StringIO(lines), "jsonl", Ticket, {})
        assert summary.produced == 20
        assert broker.stop() is True
        assert not broker.status().running
        assert broker.start() is True
        out = io.StringIO()
        printed, _ = consume_topic(s, s.topic("tickets"), from_beginning=True, max_records=20,
                                   timeout_s=20, group=None, out=out, err=io.StringIO())
        assert printed == 20
        assert {json.loads(x)["id"] for x in out.getvalue().splitlines()} == {
            f"e{i}" for i in range(20)
        }
    finally:
        broker.stop()
    assert broker.stop() is False


def test_a_taken_port_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    broker = _own_broker(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", broker.settings.broker_port))
        sock.listen()
        with pytest.raises(BrokerError, match=f"port {broker.settings.broker_port} .* in use"):
            broker.start()


def test_missing_java_or_maven_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _own_broker(tmp_path)
    monkeypatch.setattr(broker_module.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="Java 17\\+ is not installed.*docker compose up"):
        broker.start()
    monkeypatch.setattr(
        broker_module.shutil, "which", lambda name: "/usr/bin/java" if name == "java" else None
    )
    monkeypatch.setattr(broker, "jars_ready", lambda: False)
    with pytest.raises(BrokerError, match="Maven \\(mvn\\) is not installed.*docker compose up"):
        broker.start()


def test_status_of_a_broker_never_started(tmp_path: Path) -> None:
    status = _own_broker(tmp_path).status()
    assert not status.running and status.pid is None
