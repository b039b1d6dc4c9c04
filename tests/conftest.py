"""Shared fixtures: one real Kafka broker per test session, a topic prefix per test.

Broker order: ``DISTILLERY_KAFKA_BOOTSTRAP`` if set; else a testcontainers Kafka when a
Docker *engine* answers (the client alone proves nothing); else the embedded broker,
started for the session under a temporary state directory and stopped at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillery.settings import Settings, load_settings
from workers.runtime.procs import free_port

REPO = Path(__file__).resolve().parents[1]
CLINC_DIR = REPO / "datasets" / "clinc150"  # shipped with the repository (CC-BY-3.0)


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the broker is a ``kafka`` test, marked or not: ``-m "not kafka"``
    must never start one."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of the session's real broker."""
    base = load_settings()
    if "kafka_bootstrap" in base.model_fields_set:
        yield base.kafka_bootstrap
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(image="apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from workers.runtime.broker import EmbeddedBroker

    settings = base.model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("broker-state"),
            "broker_port": free_port(),
            "broker_controller_port": free_port(),
        }
    )
    broker = EmbeddedBroker(settings)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: the session broker, its own topic prefix, topics created."""
    from streams.topics import create_topics

    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        registry_root=tmp_path / "registry",
        state_dir=tmp_path / "state",
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="session")
def clinc_dir() -> Path:
    if not (CLINC_DIR / "data_full.json").is_file():
        pytest.fail(f"CLINC150 data not found at {CLINC_DIR}")
    return CLINC_DIR
