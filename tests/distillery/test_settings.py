"""One frozen settings object from env and TOML; tasks from configuration; compose agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError as PydanticValidationError

from distillery.errors import ConfigError
from distillery.settings import Settings, load_settings, setting_env_names
from distillery.tasks import BUILTIN_TASKS, get_task, load_tasks

REPO = Path(__file__).resolve().parents[2]


def test_settings_are_frozen_and_read_the_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISTILLERY_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("DISTILLERY_TEACHER_API_KEY", "sk-secret")
    s = load_settings()
    assert s.kafka_bootstrap == "kafka:9092"
    assert "sk-secret" not in repr(s)
    assert s.teacher_api_key is not None and s.teacher_api_key.get_secret_value() == "sk-secret"
    with pytest.raises(PydanticValidationError):
        s.kafka_bootstrap = "other:1"  # type: ignore[misc]


def test_toml_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "distillery.toml"
    config.write_text('topic_prefix = "staging."\nbatch_size = 64\n', encoding="utf-8")
    monkeypatch.setenv("DISTILLERY_BATCH_SIZE", "128")
    s = load_settings(config_file=config)
    assert (s.topic_prefix, s.batch_size) == ("staging.", 128)
    assert s.topic("tickets") == "staging.tickets"
    monkeypatch.setenv("DISTILLERY_CONFIG", str(config))
    assert load_settings().topic_prefix == "staging."


def test_a_bad_setting_is_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLERY_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="DISTILLERY_BATCH_SIZE") as info:
        load_settings()
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(config_file=Path("/nonexistent.toml"))


def test_sasl_ssl_settings_become_client_kwargs() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                 kafka_sasl_username="u", kafka_sasl_password="p")
    kw = s.kafka_python_kwargs()
    assert kw["sasl_plain_password"] == "p" and kw["security_protocol"] == "SASL_PLAINTEXT"
    assert s.aiokafka_kwargs()["sasl_mechanism"] == "PLAIN"


def test_builtin_tasks_and_a_third_task_from_configuration(tmp_path: Path) -> None:
    assert len(BUILTIN_TASKS["tickets"].labels) == 12
    assert BUILTIN_TASKS["moderation"].critical_labels
    assert BUILTIN_TASKS["tickets"].results_topic == "tickets.routed"
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text(
        '[tasks.intents]\nschema = "text"\n'
        'labels = [{name = "card_lost", critical = true}, {name = "balance"}]\n',
        encoding="utf-8",
    )
    s = Settings(tasks_file=tasks_file)
    intents = get_task(s, "intents")
    assert intents.results_topic == "intents.decisions"
    assert intents.critical_labels == ["card_lost"]
    assert set(load_tasks(s)) == {"tickets", "moderation", "intents"}
    with pytest.raises(ConfigError, match="unknown task"):
        get_task(s, "nope")
    tasks_file.write_text('[tasks.bad]\nlabels = [{name = "only-one"}]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="task bad"):
        load_tasks(s)


def test_docker_compose_parses_and_names_only_real_settings() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "kafka" in compose["services"]
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    known = setting_env_names()
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    named = set(re.findall(r"\bDISTILLERY_[A-Z0-9_]+", text))
    assert named, "compose configures the workers through DISTILLERY_* variables"
    assert named <= known, f"unknown settings in docker-compose.yml: {sorted(named - known)}"
    for name, service in compose["services"].items():
        if "build" not in service:  # kafka, prometheus: images of their own
            continue
        env = service.get("environment", {})
        assert env.get("DISTILLERY_KAFKA_BOOTSTRAP") == "kafka:9092", name
        # only the trainer's image carries torch; every target is a stage of the Dockerfile
        target = service["build"]["target"]
        assert target == ("trainer" if "trainer" in service["command"] else "serving"), name
        assert f" AS {target}" in (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_nothing_but_settings_reads_the_environment() -> None:
    offenders = []
    for package in ("distillery", "schemas", "models", "streams", "workers"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "settings.py" and package == "distillery":
                continue
            if re.search(r"os\.environ|os\.getenv", path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_a_schema_registry_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="DISTILLERY_SCHEMA_REGISTRY_URL.*http://"):
        load_settings(schema_registry_url="localhost:8081")
    found = load_settings(schema_registry_url="http://127.0.0.1:8081/apis/ccompat/v7/")
    assert found.schema_registry_url == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert load_settings(schema_registry_url="").schema_registry_url is None
