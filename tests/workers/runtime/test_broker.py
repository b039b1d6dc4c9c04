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


def test_the_secure_format_keeps_passwords_off_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat
    import subprocess

    broker = EmbeddedBroker(load_settings(state_dir=tmp_path / "state"), secure=True)
    assert broker.secure is not None
    broker.secure.make()
    broker.home.mkdir(parents=True, exist_ok=True)
    passwords = list(broker.secure.users().values())
    seen: dict[str, object] = {}

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen["cmd"] = cmd
        args = Path(cmd[-1].removeprefix("@"))
        seen["mode"] = stat.S_IMODE(args.stat().st_mode)
        seen["file"] = args.read_text(encoding="utf-8")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(broker_module.subprocess, "run", run)
    broker._format_once()
    cmd = " ".join(seen["cmd"])  # type: ignore[arg-type]
    assert passwords and not any(p in cmd for p in passwords)
    assert seen["mode"] == 0o600
    text = str(seen["file"])
    assert text.startswith('"kafka.tools.StorageTool"\n"format"')
    assert all(f"password={p}]" in text for p in passwords)
    assert not (broker.home / "format.args").exists()  # removed once the tool ran
