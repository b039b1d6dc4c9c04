"""``distillery deadletter replay`` against the real broker: dead letters go back to their
source topic (whole, or re-read at their source offset), once; anything else is skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import TICKETS
from schemas.serde import encode
from streams.decode import RawEvent, dead_letter
from tests.streams.kit import read_all
from workers.records.redrive import redrive

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[3]


def _send(settings: Settings, topic: str, key: bytes, value: bytes) -> int:
    """Produce to a full topic name, partition 0; the record's offset."""
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    try:
        meta = producer.send(topic, key=key, value=value, partition=0).get(30)
        return int(meta.offset)
    finally:
        producer.close()


def test_dead_letters_are_re_driven_to_their_source_once(kafka_settings: Settings,
                                                          tmp_path: Path) -> None:
    s = kafka_settings
    teacher, tickets = s.topic(TICKETS.teacher_topic), s.topic(TICKETS.input_topic)
    big = b"R" * 5000  # the letter keeps a prefix: re-read at the source offset
    offset = _send(s, teacher, b"big", big)
    letters = [
        dead_letter("tickets", RawEvent(teacher, 0, 99, b"r1", b"request one"), "rejected",
                    "HTTP 400"),
        dead_letter("tickets", RawEvent(teacher, 0, offset, b"big", big), "rejected",
                    "HTTP 413", keep_bytes=100),
        dead_letter("tickets", RawEvent(tickets, 0, 7, b"j", b"not a ticket"), "undecodable",
                    "bad magic"),
        dead_letter("tickets", RawEvent(s.topic("tickets.routed"), 0, 1, b"x", b"x"),
                    "rejected", "not an input"),
        dead_letter("tickets", RawEvent(teacher, 0, 10**9, b"gone", b"G" * 5000), "rejected",
                    "gone", keep_bytes=100),
    ]
    for letter in letters:
        _send(s, s.topic("deadletter"), letter.key or b"", encode(letter))

    dry = redrive(s, [TICKETS], dry_run=True)
    assert dry.replayed == {"rejected": 2, "undecodable": 1} and not read_all(s, "tickets")

    done = redrive(s, [TICKETS], kinds={"rejected"})
    assert dict(done.replayed) == {"rejected": 2} and done.from_source == 1
    assert done.skipped["undecodable"] == 1 and len(done.lost) == 1
    assert any("not an input" in k for k in done.skipped)
    back = {(m.key, m.value) for m in read_all(s, TICKETS.teacher_topic)}
    assert (b"r1", b"request one") in back and (b"big", big) in back
    assert not read_all(s, "tickets")  # undecodable was filtered out

    again = redrive(s, [TICKETS])  # the cursor moved: nothing new since
    assert again.scanned == 0 and not again.replayed

    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env.update({"DISTILLERY_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "DISTILLERY_TOPIC_PREFIX": s.topic_prefix, "DISTILLERY_STATE_DIR":
                str(s.state_dir)})
    run = subprocess.run([sys.executable, "-m", "workers.cli", "deadletter", "replay",
                          "--from-beginning", "--kind", "undecodable", "--json",
                          str(tmp_path / "r.json")], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["replayed"] == {"undecodable": 1}
    assert [(m.key, m.value) for m in read_all(s, "tickets")] == [(b"j", b"not a ticket")]
