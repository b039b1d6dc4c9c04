"""Commands take the short catalogue name of a topic, apply the prefix and say which name
they used; ``produce --wire json`` writes JSON that ``consume`` reads beside Avro."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distillery.settings import Settings, load_settings
from schemas.serde import wire_format
from tests.streams.kit import read_all
from workers.cli.records import resolve_topic


@pytest.mark.parametrize("given, full", [
    ("tickets", "prod.tickets"),
    ("tickets.routed", "prod.tickets.routed"),
    ("deadletter", "prod.deadletter"),
    ("prod.tickets", "prod.tickets"),  # a full name still works
    ("elsewhere", "elsewhere"),  # outside the catalogue: as given
])
def test_short_catalogue_names_get_the_prefix(given: str, full: str) -> None:
    assert resolve_topic(load_settings(topic_prefix="prod."), given, say=False) == full


def test_without_a_prefix_names_are_unchanged() -> None:
    assert resolve_topic(load_settings(topic_prefix=""), "tickets", say=False) == "tickets"


@pytest.mark.kafka
def test_cli_produce_and_consume_with_a_short_name(kafka_settings: Settings,
                                                   tmp_path: Path) -> None:
    avro_file, json_file = tmp_path / "a.jsonl", tmp_path / "j.jsonl"
    avro_file.write_text(json.dumps({"id": "s-avro", "body": "by avro"}) + "\n", "utf-8")
    json_file.write_text(json.dumps({"id": "s-json", "body": "by json"}) + "\n", "utf-8")
    env = {"DISTILLERY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
           "DISTILLERY_TOPIC_PREFIX": kafka_settings.topic_prefix, "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "workers.cli"]
    full = kafka_settings.topic("tickets")
    for args in (["produce", "tickets", str(avro_file)],
                 ["produce", "tickets", str(json_file), "--wire", "json"]):
        done = subprocess.run(cli + args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"topic {full}" in done.stderr and "produced 1, rejected 0" in done.stdout
    wires = {m.key.decode(): wire_format(m.value) for m in read_all(kafka_settings, "tickets")}
    assert wires == {"s-avro": "avro", "s-json": "json"}
    done = subprocess.run(cli + ["consume", "tickets", "--from-beginning", "--max", "2",
                                 "--timeout", "20"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"topic {full}" in done.stderr
    assert sorted(json.loads(line)["body"] for line in done.stdout.splitlines()) == [
        "by avro", "by json"]
