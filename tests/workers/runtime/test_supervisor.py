"""The supervisor restarts a crashed child with backoff and stops the rest cleanly."""

from __future__ import annotations

import json
import time
from pathlib import Path

from distillery.settings import child_env, load_settings
from workers.runtime.supervisor import Child, Supervisor, up_file


def test_a_crashing_child_is_restarted_with_backoff_and_a_healthy_one_stopped(
    tmp_path: Path,
) -> None:
    settings = load_settings(state_dir=tmp_path / "state", topic_prefix="sup.")
    env = child_env(settings)
    # `broker status` on a broker that does not run exits 1 at once: a crashing child.
    crasher = Child("crasher", ["broker", "status"], env, tmp_path / "crasher.log")
    # `consume` on an unreachable cluster keeps trying to connect: a child that stays up.
    sleeper = Child("sleeper", ["consume", "sup.x", "--timeout", "60"],
                    {**env, "DISTILLERY_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, tmp_path / "sleeper.log")
    supervisor = Supervisor(settings, [crasher, sleeper])
    supervisor.start()
    state = json.loads(up_file(settings).read_text(encoding="utf-8"))
    assert set(state["children"]) == {"crasher", "sleeper"}
    starts: list[float] = []
    deadline = time.monotonic() + 60  # three CLI starts and 1 + 2 s of backoff, ~5 s idle
    while time.monotonic() < deadline and crasher.restarts < 3:
        supervisor.poll()
        if crasher.proc is not None and (not starts or crasher.started_at != starts[-1]):
            starts.append(crasher.started_at)
        time.sleep(0.1)
    assert crasher.restarts >= 3 and set(crasher.history) == {1}
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[-1] > gaps[0], f"backoff grows: {gaps}"
    assert sleeper.proc is not None and sleeper.proc.poll() is None and sleeper.restarts == 0
    supervisor.shutdown(timeout_s=20)
    assert sleeper.proc.poll() is not None
    assert not up_file(settings).exists()


def test_status_reports_lag_of_a_committed_group(kafka_settings, tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    from distillery.tasks import load_tasks
    from workers.runtime.status import gather

    s = kafka_settings
    producer = KafkaProducer(**s.kafka_python_kwargs())
    for i in range(10):
        producer.send(s.topic("tickets.teacher"), key=b"k%d" % i, value=b"v", partition=0)
    producer.flush()
    producer.close()
    group = f"{s.topic_prefix}distillery-teacher-tickets"
    consumer = KafkaConsumer(s.topic("tickets.teacher"), group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=4, **s.kafka_python_kwargs())
    got = 0
    while got < 4:
        got += sum(len(v) for v in consumer.poll(timeout_ms=1000, max_records=4).values())
    consumer.commit()
    consumer.close()
    rows = {r["name"]: r for r in gather(s, list(load_tasks(s).values()))["components"]}
    assert rows["teacher-tickets"]["lag"] == 10 - got
    assert rows["model tickets"]["state"] == "none"
