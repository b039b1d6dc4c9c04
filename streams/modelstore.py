"""Model bytes on Kafka itself, so a worker on any host that reaches the brokers can load an
announced version: ``kafka://<topic>/<task>/<version>?partition=P&offset=O``.

Why Kafka and not an object store: every host running a worker already reaches the brokers
with the project's credentials, so the registry needs no second service, bucket or secret;
a float16 model (34 MB at 2^18 x 64) is 65 chunks, published in 0.25 s and fetched and
loaded in 0.39 s here (a local copy and load: 0.14 s; README "Scaling out").

Layout: one compacted topic ``models.blobs`` (one partition). A version's files
(``model.onnx``, ``manifest.json``) are written as chunks of ``CHUNK_BYTES`` keyed
``<task>/<version>/<file>/<nnnnn>``, then one index record keyed ``<task>/<version>/index``
(JSON: each file's size, chunk count, sha256, and the offsets of the first and last chunk).
The URI names the index record's partition and offset, so a fetch seeks straight to it and
then reads only that version's chunks (compaction keeps offsets, and keys are unique per
chunk, so nothing of a live version is ever compacted away). Fetching writes the files into
``<registry_root>/.remote/<task>/<version>/`` atomically, checks every file's sha256 against
the index, and the caller then loads the model against the *announced* sha256
(``models.stage.Stage.load``): bytes that do not match are never served.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

from distillery.errors import BrokerError, ModelError
from distillery.settings import Settings
from models.registry import sweep_stale
from models.stage import MANIFEST_FILE, MODEL_FILE

BLOBS_TOPIC = "models.blobs"
CHUNK_BYTES = 512 * 1024  # under the broker's default 1 MB message limit
FILES = (MODEL_FILE, MANIFEST_FILE)
REMOTE_DIR = ".remote"
KEEP_REMOTE = 3  # fetched versions a host keeps per task
# the only names a URI may carry: a task's name (as ``distillery.tasks`` allows it), with a
# later stage's name after a slash (``tickets/embed``: ``models.stage.registry_key``),
# and a version name of the registry's own form (``v0001``); nothing that can walk a path
TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}(/[a-z0-9_-]{1,32})?")
VERSION_NAME = re.compile(r"v[0-9]{4,9}")
T = TypeVar("T")


def blobs_spec(settings: Settings) -> Any:
    from streams.topics import TopicSpec

    return TopicSpec(settings.topic(BLOBS_TOPIC), "raw", 1, {
        "cleanup.policy": "compact", "max.message.bytes": str(2 * CHUNK_BYTES)})


def publish_version(settings: Settings, task: str, version: str, directory: Path) -> str:
    """Write a version directory's files to ``models.blobs``; return its ``kafka://`` URI."""
    from streams.topics import create_topics

    create_topics(settings, [blobs_spec(settings)])
    return _in_thread(_publish(settings, task, version, directory))


def _in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a loop of its own (callers may be inside a running loop).

    aiokafka rather than kafka-python: kafka-python checksums record batches in pure Python
    (without the optional ``crc32c`` package), far too slow for a model's megabytes."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="distillery-modelstore")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _publish(settings: Settings, task: str, version: str, directory: Path) -> str:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    topic = settings.topic(BLOBS_TOPIC)
    producer = AIOKafkaProducer(linger_ms=5, max_request_size=2 * CHUNK_BYTES,
                                client_id="distillery-modelstore",
                                **settings.aiokafka_producer_kwargs())
    index: dict[str, Any] = {"task": task, "version": version, "files": {}}
    offsets: list[int] = []
    try:
        await producer.start()
        for name in FILES:
            data = (directory / name).read_bytes()
            chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
            futures = [await producer.send(topic, key=f"{task}/{version}/{name}/{i:05d}".encode(),
                                           value=chunk, partition=0)
                       for i, chunk in enumerate(chunks)]
            offsets += [(await f).offset for f in futures]
            index["files"][name] = {"size": len(data), "chunks": len(chunks),
                                    "sha256": hashlib.sha256(data).hexdigest()}
        index["first_offset"], index["last_offset"] = min(offsets), max(offsets)
        meta = await producer.send_and_wait(topic, key=f"{task}/{version}/index".encode(),
                                            value=json.dumps(index).encode(), partition=0)
    except KafkaError as exc:
        raise BrokerError(f"could not publish {task} {version} to {topic}: {exc}") from exc
    finally:
        await producer.stop()
    return f"kafka://{topic}/{task}/{version}?partition={meta.partition}&offset={meta.offset}"


def parse_uri(uri: str) -> tuple[str, str, str, int, int]:
    """(topic, task, version, partition, offset) of a ``kafka://`` model URI.

    The task must be a task name (or ``<task>/<stage>``) and the version a registry version
    name (``v0001``): anything else (``..``, an empty part) is refused with ``ModelError``."""
    parsed = urlparse(uri)
    parts = parsed.path.strip("/").split("/")
    query = parse_qs(parsed.query)
    if parsed.scheme != "kafka" or len(parts) not in (2, 3) or not parsed.netloc:
        raise ModelError(f"not a kafka model uri: {uri!r}")
    task, version = "/".join(parts[:-1]), parts[-1]
    if not KEY_NAME.fullmatch(task) or not VERSION_NAME.fullmatch(version):
        raise ModelError(f"kafka model uri {uri!r}: {task!r}/{version!r} is not a task name "
                         "and a version name (v0001); refused")
    try:
        partition, offset = int(query["partition"][0]), int(query["offset"][0])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"kafka model uri {uri!r} lacks partition/offset") from exc
    if partition < 0 or offset < 0:
        raise ModelError(f"kafka model uri {uri!r}: negative partition or offset; refused")
    return parsed.netloc, task, version, partition, offset


def local_copy(settings: Settings, task: str, version: str) -> Path:
    """``<registry_root>/.remote/<task>[/<stage>]/<version>``; ``ModelError`` for names that
    are not a task's and a version's, or a path that would resolve outside ``.remote``."""
    if not KEY_NAME.fullmatch(task) or not VERSION_NAME.fullmatch(version):
        raise ModelError(f"{task!r}/{version!r} is not a task name and a version name; refused")
    remote = (settings.registry_root / REMOTE_DIR).resolve()
    parts = [*task.split("/"), version]
    target = remote.joinpath(*parts).resolve()
    if target != remote.joinpath(*parts) or not target.is_relative_to(remote):
        raise ModelError(f"{target} is outside {remote}; refused")
    return target


def fetch_version(settings: Settings, uri: str, timeout_s: float = 120.0) -> Path:
    """The version's directory on this host, fetched from Kafka unless already here.

    Every file is checked against the index's sha256 before the directory appears (staged,
    then renamed); a cached copy is re-checked the same way before it is reused.
    """
    topic, task, version, partition, offset = parse_uri(uri)
    if topic != settings.topic(BLOBS_TOPIC):
        raise ModelError(f"model uri {uri!r} names topic {topic}, not "
                         f"{settings.topic(BLOBS_TOPIC)}; refused")
    target = local_copy(settings, task, version)
    if (target / "index.json").is_file() and _intact(target):
        return target
    records = _read(settings, topic, partition, offset, task, version, timeout_s)
    sweep_stale(_mkdir(target.parent), ".fetch-")
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        index = records.pop("index")
        parsed = json.loads(index)
        if parsed.get("task") != task or parsed.get("version") != version:
            raise ModelError(f"{uri}: the index names {parsed.get('task')!r} "
                             f"{parsed.get('version')!r}, not {task} {version}; refused")
        for name, meta in parsed["files"].items():
            if name not in FILES:
                raise ModelError(f"{uri}: unexpected file {name!r} in the index")
            data = b"".join(records.get(f"{name}/{i:05d}", b"") for i in range(meta["chunks"]))
            if len(data) != meta["size"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ModelError(f"{uri}: {name} does not match its index (size or sha256)")
            (staging / name).write_bytes(data)
        (staging / "index.json").write_bytes(index)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prune_remote(target.parent, keep=KEEP_REMOTE)
    return target


def prune_remote(folder: Path, keep: int = 3) -> list[str]:
    """Delete all but the newest ``keep`` fetched versions in ``.remote/<task>``: a worker
    has loaded what it serves into memory, and an older version is fetched again if it is
    ever rolled back to."""
    versions = sorted(p.name for p in folder.iterdir() if VERSION_NAME.fullmatch(p.name))
    removed = versions[:-keep] if keep > 0 else versions
    for name in removed:
        shutil.rmtree(folder / name, ignore_errors=True)
    return removed


def chunk_keys(task: str, version: str, directory: Path) -> list[str]:
    """Every key a version's files were published under, and its index's."""
    keys = []
    for name in FILES:
        size = (directory / name).stat().st_size
        chunks = max(1, -(-size // CHUNK_BYTES))
        keys += [f"{task}/{version}/{name}/{i:05d}" for i in range(chunks)]
    return [*keys, f"{task}/{version}/index"]


def tombstone_version(settings: Settings, task: str, version: str, directory: Path) -> int:
    """Write a tombstone for each of a pruned version's records on ``models.blobs``, so
    compaction removes its bytes; returns how many."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    keys = chunk_keys(task, version, directory)
    try:
        producer = KafkaProducer(client_id="distillery-modelstore",
                                 **settings.kafka_python_producer_kwargs())
        try:
            futures = [producer.send(settings.topic(BLOBS_TOPIC), key=k.encode(), value=None,
                                     partition=0) for k in keys]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
        finally:
            producer.close()
    except KafkaError as exc:
        raise BrokerError(f"could not tombstone {task} {version} on "
                          f"{settings.topic(BLOBS_TOPIC)}: {exc}") from exc
    return len(keys)


def prune_versions(settings: Settings, key: str, keep: int | None = None) -> list[str]:
    """``Registry.prune`` of a task's (or stage's) versions; with the Kafka model store the
    pruned versions' bytes on ``models.blobs`` are tombstoned too."""
    from models.registry import Registry

    def tombstone(version: str, directory: Path) -> None:
        tombstone_version(settings, key, version, directory)

    return Registry.from_settings(settings).prune(
        key, keep, before_remove=tombstone if settings.model_store == "kafka" else None)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _intact(directory: Path) -> bool:
    index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    for name, meta in index["files"].items():
        path = directory / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != meta["sha256"]:
            return False
    return True


def _read(settings: Settings, topic: str, partition: int, offset: int, task: str,
          version: str, timeout_s: float) -> dict[str, bytes]:
    """The index at ``offset`` and the chunks it names: {"index": ..., "<file>/<n>": ...}."""
    return _in_thread(_read_async(settings, topic, partition, offset, task, version, timeout_s))


async def _read_async(settings: Settings, topic: str, partition: int, offset: int, task: str,
                      version: str, timeout_s: float) -> dict[str, bytes]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    prefix = f"{task}/{version}/"
    tp = TopicPartition(topic, partition)
    found: dict[str, bytes] = {}
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False,
                                fetch_max_bytes=16 * CHUNK_BYTES,
                                max_partition_fetch_bytes=4 * CHUNK_BYTES,
                                **settings.aiokafka_kwargs())
    try:
        await consumer.start()
        consumer.assign([tp])
        deadline = time.monotonic() + timeout_s
        index: dict[str, Any] | None = None
        consumer.seek(tp, offset)
        while index is None or len(found) < 1 + sum(f["chunks"] for f in index["files"].values()):
            if time.monotonic() > deadline:
                raise ModelError(f"{task} {version}: not all chunks arrived from {topic} "
                                 f"within {timeout_s:.0f}s")
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    key = (m.key or b"").decode("utf-8", "replace")
                    if index is None:
                        if key != f"{prefix}index" or m.offset != offset:
                            raise ModelError(f"{topic}[{partition}]@{offset} is not the index "
                                             f"of {task} {version}; refused")
                        found["index"] = bytes(m.value or b"")
                        index = json.loads(found["index"])
                        consumer.seek(tp, index["first_offset"])
                        break
                    if key.startswith(prefix) and key != f"{prefix}index":
                        found[key[len(prefix):]] = bytes(m.value or b"")
    except KafkaError as exc:
        raise BrokerError(f"fetching {task} {version} from {topic} failed: {exc}") from exc
    finally:
        await consumer.stop()
    return found
