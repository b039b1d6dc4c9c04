"""The classify worker survives a broker restart mid-stream and loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from distillery.settings import load_settings
from streams.topics import create_topics
from tests.streams.kit import collect, produce_paced, start_classify, stop
from tests.streams.test_coldstart import _tickets
from workers.runtime.broker import EmbeddedBroker
from workers.runtime.procs import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    base = load_settings(state_dir=tmp_path / "broker", broker_port=free_port(),
                         broker_controller_port=free_port())
    broker = EmbeddedBroker(base)
    broker.start()
    s = base.model_copy(update={"kafka_bootstrap": broker.bootstrap, "topic_prefix": "rs.",
                                "state_dir": tmp_path / "state",
                                "registry_root": tmp_path / "registry"})
    create_topics(s)
    good = _tickets(3000, "rs-")
    log = tmp_path / "worker.log"
    worker = start_classify(s, log)
    try:
        produce_paced(s, good[:1000], 500.0)
        collect(s, "tickets.routed", "tickets.teacher", {k.decode() for k, _ in good[:1000]},
                0, timeout_s=120)
        broker.stop()
        time.sleep(3)
        assert worker.poll() is None, "the worker rides out the outage"
        broker.start()
        producer = threading.Thread(target=produce_paced, args=(s, good[1000:], 500.0))
        producer.start()
        producer.join()
        out = collect(s, "tickets.routed", "tickets.teacher", {k.decode() for k, _ in good},
                      0, timeout_s=180)
    finally:
        code = stop(worker)
        broker.stop()
    assert set(out["request_counts"]) == {k.decode() for k, _ in good}, "no id lost"
    assert code == 0, log.read_text()[-2000:]
