"""Scaling out: a second classify worker joins the group, then the first leaves, while events
flow on 12 partitions. Every event is decided (or deferred), none lost; duplicates counted.

Both workers are real processes in one consumer group; each serves its own /metrics, which
shows that the group really shared the partitions (both read events) before one left.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from distillery.settings import Settings, load_settings
from schemas.records import Ticket
from schemas.serde import encode
from streams.topics import create_topics
from tests.streams.kit import (
    collect,
    produce_paced,
    start_classify,
    stop,
    wait_until_consuming,
)
from workers.runtime.procs import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _events_in(port: int) -> float:
    """The worker's ``distillery_events_in_total`` (0 when it has not read any yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    found = re.findall(r'^distillery_events_in_total\{task="tickets"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_add_a_worker_then_stop_one_under_load(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        registry_root=tmp_path / "registry", state_dir=tmp_path / "state",
        topic_partitions=12,
    )
    create_topics(settings)
    good = [(f"sc-{i}".encode(), encode(Ticket(id=f"sc-{i}", subject="Help",
                                                body=f"my order {i} has not arrived")))
            for i in range(9000)]
    extra = {"DISTILLERY_TOPIC_PARTITIONS": "12", "DISTILLERY_BATCH_SIZE": "64"}
    port_a, port_b = free_port(), free_port()
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    worker_a = start_classify(settings, log_a, DISTILLERY_WEB_PORT=str(port_a), **extra)
    worker_b = None
    # joined before the stream starts: a fast worker must not find it all as a backlog
    wait_until_consuming(settings, 1, workers=(worker_a,))
    producer = threading.Thread(target=produce_paced, args=(settings, good, 250.0))
    producer.start()
    try:
        _wait(lambda: _events_in(port_a) > 500, 120, "worker A to read events")
        worker_b = start_classify(settings, log_b, DISTILLERY_WEB_PORT=str(port_b), **extra)
        # the group rebalanced and both workers read part of the stream
        _wait(lambda: _events_in(port_b) > 300, 120, "worker B to take partitions")
        a_before = _events_in(port_a)
        _wait(lambda: _events_in(port_a) > a_before + 100, 60, "worker A to keep a share")
        assert worker_a.poll() is None, log_a.read_text()[-3000:]
        assert stop(worker_a) == 0, log_a.read_text()[-3000:]  # removed while events flow
        producer.join()
        out = collect(settings, "tickets.routed", "tickets.teacher",
                      {k.decode() for k, _ in good}, 0, timeout_s=180)
    finally:
        producer.join()
        stop(worker_a)
        if worker_b is not None:
            assert stop(worker_b) == 0, log_b.read_text()[-3000:]
    wanted = {k.decode() for k, _ in good}
    decided = {d.id for d in out["decisions"]} | {
        r.id for r in out["requests"] if r.reason != "audit"}
    assert decided == wanted, f"{len(wanted - decided)} events lost"
    counts = out["request_counts"] + out["decision_counts"]
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    print(f"scale test: {len(wanted)} events, {duplicates} duplicates "
          f"(worker A read {a_before:.0f}+ before it left)")


def test_topics_are_created_with_the_replication_the_cluster_allows(
        kafka_settings: Settings) -> None:
    # Issue 29 (9): topics had replication 1 and no min.insync.replicas whatever the cluster.
    from kafka.admin import ConfigResource, ConfigResourceType

    from distillery.errors import ConfigError
    from streams.topics import admin_client, create_topics

    admin = admin_client(kafka_settings)
    try:
        topic = kafka_settings.topic("tickets")
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entry = next(iter(next(iter(found.values())).values()))["min.insync.replicas"]

    finally:
        admin.close()
    # set on the topic (not the broker's default): one broker, 1 replica, 1 in sync
    assert (entry["value"], entry["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG")
    fresh = kafka_settings.model_copy(update={"topic_prefix": kafka_settings.topic_prefix + "x",
                                              "topic_min_insync_replicas": 2})
    with pytest.raises(ConfigError, match="no write could be acked"):
        create_topics(fresh)
