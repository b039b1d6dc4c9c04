"""A registry every host can read: model bytes on Kafka (``kafka://`` URIs), fetched and
sha256-checked by a worker whose own registry folder is empty."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from distillery.errors import ModelError
from distillery.settings import Settings
from models.export import export_onnx
from models.featurize import Featurizer, FeaturizerConfig
from models.network import StudentNet
from models.registry import Registry
from models.stage import Stage, sha256_of
from schemas.records import ModelAnnouncement
from streams.announce import announce_manifest, publish_announcement
from streams.hotswap import ModelHolder, announced_directory, default_loader
from streams.modelstore import (
    BLOBS_TOPIC,
    blobs_spec,
    fetch_version,
    local_copy,
    parse_uri,
    publish_version,
)
from tests.streams.kit import start_classify, stop
from workers.runtime.procs import free_port

pytestmark = [pytest.mark.kafka]

LABELS = ["billing", "shipping", "technical"]


def _version(directory: Path, buckets: int, version: str = "v0001") -> str:
    """A small student as the registry writes it: model.onnx + manifest.json. Its sha256."""
    torch.manual_seed(1)
    net = StudentNet(buckets, 16, len(LABELS))
    data = export_onnx(net, 1.0, weights="float16")
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(data)
    featurizer = Featurizer(FeaturizerConfig(buckets=buckets, max_ids=64))
    manifest = {"task": "tickets", "version": version, "labels": LABELS,
                "sha256": sha256_of(data), "thresholds": [0.0] * len(LABELS),
                "featurizer": featurizer.to_dict()}
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return sha256_of(data)


def test_fetch_into_an_empty_registry_checks_every_byte(kafka_settings: Settings,
                                                        tmp_path: Path) -> None:
    sha = _version(tmp_path / "publisher" / "v0001", 1 << 16)
    uri = publish_version(kafka_settings, "tickets", "v0001", tmp_path / "publisher" / "v0001")
    assert parse_uri(uri)[1:3] == ("tickets", "v0001")
    # another host: nothing in its registry folder
    other = kafka_settings.model_copy(update={"registry_root": tmp_path / "other-host"})
    directory = fetch_version(other, uri)
    assert directory == local_copy(other, "tickets", "v0001")
    student = Stage.load(directory, expected_sha256=sha)
    assert list(student.labels) == LABELS
    with pytest.raises(ModelError):  # the announcement's sha256 is what is served, or nothing
        Stage.load(directory, expected_sha256="0" * 64)
    # a corrupted cached copy is fetched again, not served
    (directory / "model.onnx").write_bytes(b"corrupt")
    assert Stage.load(fetch_version(other, uri), expected_sha256=sha)
    third = kafka_settings.model_copy(update={"registry_root": tmp_path / "third-host"})
    with pytest.raises(ModelError):  # an offset that is not this version's index
        fetch_version(third, re.sub(r"offset=\d+", "offset=0", uri), timeout_s=10)


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_worker_with_an_empty_registry_serves_a_version_announced_by_uri(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    buckets = 1 << 16
    publisher = kafka_settings.model_copy(update={"model_store": "kafka",
                                                  "student_buckets": buckets})
    registry = Registry(publisher.registry_root)
    staged = tmp_path / "staged" / "v0001"
    _version(staged, buckets)
    manifest = registry.publish("tickets", (staged / "model.onnx").read_bytes(),
                                json.loads((staged / "manifest.json").read_text("utf-8")))
    port = free_port()
    worker_root = tmp_path / "worker-host-registry"  # empty: the worker is on another host
    log = tmp_path / "worker.log"
    worker = start_classify(kafka_settings, log, DISTILLERY_WEB_PORT=str(port),
                            DISTILLERY_REGISTRY_ROOT=str(worker_root),
                            DISTILLERY_MODEL_STORE="kafka")
    try:
        announce_manifest(publisher, manifest)
        want = f'distillery_model_version_info{{task="tickets",version="{manifest.version}"}} 1.0'
        deadline = time.monotonic() + 120
        while want not in _metrics(port) and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(1.0)
        assert want in _metrics(port), log.read_text()[-3000:]
    finally:
        stop(worker)
    assert (local_copy(kafka_settings.model_copy(update={"registry_root": worker_root}),
                       "tickets", manifest.version) / "model.onnx").is_file()


@pytest.mark.parametrize("uri", [
    "kafka://models.blobs/../..?partition=0&offset=3",
    "kafka://models.blobs/tickets/..?partition=0&offset=3",
    "kafka://models.blobs/../v0001?partition=0&offset=3",
    "kafka://models.blobs/tickets/v0001/..?partition=0&offset=3",
    "kafka://models.blobs/tickets/%2e%2e?partition=0&offset=3",
    "kafka://models.blobs/tickets/latest?partition=0&offset=3",
    "kafka://models.blobs/tickets/v0001?partition=-1&offset=3",
])
def test_a_uri_names_only_a_task_and_a_version(uri: str) -> None:
    with pytest.raises(ModelError):
        parse_uri(uri)


def test_local_copy_stays_inside_remote(tmp_path: Path) -> None:
    settings = Settings(registry_root=tmp_path / "registry")
    for task, version in [("..", ".."), ("tickets", ".."), ("..", "v0001"),
                          ("tickets/..", "v0001"), ("tickets/embed/x", "v0001"),
                          ("tickets/", "v0001"), ("/tickets", "v0001")]:
        with pytest.raises(ModelError):
            local_copy(settings, task, version)
    assert local_copy(settings, "tickets", "v0001") == (
        tmp_path / "registry" / ".remote" / "tickets" / "v0001").resolve()
    assert local_copy(settings, "tickets/embed", "v0001") == (  # a later stage's versions
        tmp_path / "registry" / ".remote" / "tickets" / "embed" / "v0001").resolve()


def test_a_later_stage_is_fetched_from_kafka_too(kafka_settings: Settings,
                                                 tmp_path: Path) -> None:
    # Issue 29 (9): tier 2's loader refused kafka:// URIs, so with MODEL_STORE=kafka the
    # refine worker never served. Its versions (key "<task>/embed") travel like tier 1's.
    _version(tmp_path / "publisher" / "v0003", 1 << 12, "v0003")
    uri = publish_version(kafka_settings, "tickets/embed", "v0003",
                          tmp_path / "publisher" / "v0003")
    assert parse_uri(uri)[1:3] == ("tickets/embed", "v0003")
    announcement = ModelAnnouncement(task="tickets/embed", version="v0003", uri=uri,
                                     sha256="0" * 64, labels=LABELS)
    other = kafka_settings.model_copy(update={"registry_root": tmp_path / "other-host",
                                              "model_store": "kafka"})
    directory = announced_directory(other, announcement)
    assert directory == (tmp_path / "other-host" / ".remote" / "tickets" / "embed"
                         / "v0003").resolve()
    assert (directory / "model.onnx").read_bytes() == (
        tmp_path / "publisher" / "v0003" / "model.onnx").read_bytes()
    with pytest.raises(ModelError, match="MODEL_STORE"):  # only with the kafka store
        announced_directory(kafka_settings, announcement)


def _produce(settings: Settings, topic: str, key: bytes, value: bytes) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    try:
        return int(producer.send(topic, key=key, value=value, partition=0).get(timeout=30).offset)
    finally:
        producer.close()


def _traversal_announcement(settings: Settings) -> ModelAnnouncement:
    """The attack of issue 29: an index record keyed ``../../index`` and an announcement whose
    URI walks two folders up from ``registry/.remote`` (to the state folder)."""
    from streams.topics import create_topics

    create_topics(settings, [blobs_spec(settings)])
    topic = settings.topic(BLOBS_TOPIC)
    index = {"task": "..", "version": "..", "files": {}, "first_offset": 0, "last_offset": 0}
    offset = _produce(settings, topic, b"../../index", json.dumps(index).encode())
    return ModelAnnouncement(task="tickets", version="v0009",
                             uri=f"kafka://{topic}/../..?partition=0&offset={offset}",
                             sha256="0" * 64, labels=LABELS, metrics={})


@pytest.mark.parametrize("store", ["file", "kafka"])
def test_traversal_records_touch_nothing_and_are_refused(kafka_settings: Settings,
                                                         tmp_path: Path, store: str) -> None:
    state = tmp_path / "state"
    settings = kafka_settings.model_copy(update={"registry_root": state / "registry",
                                                 "model_store": store})
    (state / "registry").mkdir(parents=True)
    sentinel = state / "teacher-ledger.sqlite"
    sentinel.write_text("must survive", encoding="utf-8")
    announcement = _traversal_announcement(settings)
    holder = ModelHolder("tickets", default_loader(settings), lambda task, version: None)
    assert holder.offer(announcement) is False
    assert holder.rejected == 1 and holder.current is None
    assert sentinel.read_text(encoding="utf-8") == "must survive"
    assert sorted(p.name for p in state.iterdir()) == ["registry", sentinel.name]
    # a well-formed URI of another task or version than its announcement: refused too
    forged = announcement.model_copy(update={
        "uri": f"kafka://{settings.topic(BLOBS_TOPIC)}/other/v0001?partition=0&offset=0"})
    assert holder.offer(forged) is False and holder.rejected == 2


def test_a_worker_refuses_and_counts_the_traversal_announcement(kafka_settings: Settings,
                                                                tmp_path: Path) -> None:
    state = tmp_path / "worker-state"
    (state / "registry").mkdir(parents=True)
    sentinel = state / "keep.txt"
    sentinel.write_text("must survive", encoding="utf-8")
    settings = kafka_settings.model_copy(update={"registry_root": state / "registry",
                                                 "model_store": "kafka"})
    port = free_port()
    log = tmp_path / "worker.log"
    worker = start_classify(settings, log, DISTILLERY_WEB_PORT=str(port),
                            DISTILLERY_STATE_DIR=str(state), DISTILLERY_MODEL_STORE="kafka")
    try:
        deadline = time.monotonic() + 120
        while "distillery_model_rejected_total" not in _metrics(port):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1.0)
        publish_announcement(settings, _traversal_announcement(settings))
        want = 'distillery_model_rejected_total{task="tickets"} 1.0'
        while want not in _metrics(port):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1.0)
    finally:
        stop(worker)
    assert sentinel.read_text(encoding="utf-8") == "must survive"
    assert (state / "registry").is_dir()


def test_pruned_versions_are_tombstoned_and_old_copies_go(kafka_settings: Settings,
                                                          tmp_path: Path) -> None:
    # Issue 29 (9): models.blobs was never tombstoned and .remote never pruned, so every
    # version ever promoted stayed on the broker and on every worker's disk.
    from streams.modelstore import chunk_keys, prune_remote, prune_versions
    from tests.streams.kit import read_all

    settings = kafka_settings.model_copy(update={"model_store": "kafka"})
    registry = Registry(settings.registry_root)
    for n in range(1, 5):
        staged = tmp_path / "staged" / f"v{n:04d}"
        _version(staged, 1 << 12, f"v{n:04d}")
        manifest = registry.publish("tickets", (staged / "model.onnx").read_bytes(),
                                    json.loads((staged / "manifest.json").read_text("utf-8")))
        publish_version(settings, "tickets", manifest.version, manifest.directory)
    registry.promote("tickets", "v0004")
    keys = {v: chunk_keys("tickets", v, registry.root / "tickets" / v)
            for v in ("v0001", "v0002")}
    assert prune_versions(settings, "tickets", keep=2) == ["v0001", "v0002"]
    records = [(m.key.decode(), m.value) for m in read_all(settings, BLOBS_TOPIC)]
    tombstones = {k for k, v in records if v is None}
    assert tombstones == set(keys["v0001"]) | set(keys["v0002"])
    # a host's fetched copies: the newest three stay
    remote = tmp_path / "remote" / "tickets"
    for n in range(1, 6):
        (remote / f"v{n:04d}").mkdir(parents=True)
    (remote / ".fetch-live").mkdir()
    assert prune_remote(remote, keep=3) == ["v0001", "v0002"]
    assert sorted(p.name for p in remote.iterdir()) == [".fetch-live", "v0003", "v0004",
                                                        "v0005"]


def test_what_a_killed_publisher_left_is_swept(tmp_path: Path) -> None:
    import os

    from models.registry import STALE_S

    registry = Registry(tmp_path / "registry")
    folder = tmp_path / "registry" / "tickets"
    stale, live = folder / ".staging-dead", folder / ".staging-live"
    for path in (stale, live):
        path.mkdir(parents=True)
        (path / "model.onnx").write_bytes(b"half written")
    old = time.time() - STALE_S - 60
    os.utime(stale, (old, old))
    staged = tmp_path / "staged" / "v0001"
    _version(staged, 1 << 12)
    registry.publish("tickets", (staged / "model.onnx").read_bytes(),
                     json.loads((staged / "manifest.json").read_text("utf-8")))
    assert not stale.exists() and live.exists()  # a live writer's folder is left alone
    assert registry.versions("tickets") == ["v0001"]
