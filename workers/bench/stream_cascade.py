"""``distillery bench stream --tiers ngram,embed``: the cascade end to end through Kafka.

One classify worker (tier 1) and one refine worker (tier 2), as subprocesses under a prefix
of their own. Tier 1 is a real n-gram student whose thresholds are set so that a known share
of the stream (``BenchConfig.forward``, 40%) is under them and goes on to ``tickets.refine``;
tier 2 is a real head on the sentence encoder, calibrated as the trainer calibrates it. The
figures: events/s of the whole cascade over a backlog (an event counts once its final
outcome — a decision or a teacher request — is on the broker), the share tier 1 forwarded,
each stage's CPU per item and items per CPU-second (from ``/proc``, over the backlog), and
latency at a fixed offered rate.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distillery.settings import Settings, child_env
from distillery.tasks import TaskConfig

if TYPE_CHECKING:
    from workers.bench.stream import BenchConfig, Progress

TIER1_FILE = '[tasks.tickets]\ntiers = ["ngram"]\n'
CASCADE_FILE = '[tasks.tickets]\ntiers = ["ngram", "embed"]\n'


def tasks_file(workdir: Path, cascade: bool) -> Path:
    """A tasks file for the bench's workers: tier 1 alone, or the cascade (said, not assumed)."""
    path = workdir / ("tasks-cascade.toml" if cascade else "tasks-tier1.toml")
    path.write_text(CASCADE_FILE if cascade else TIER1_FILE, encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare_models(settings: Settings, task: TaskConfig, forward: float,
                   progress: Progress) -> list[Any]:
    """Train and publish tier 1 (thresholds at the ``forward`` quantile of its confidence on
    a sample) and tier 2; return both manifests, to be announced under each run's prefix."""
    from models.embed.encoder import TextEncoder
    from models.embed.export import ensure_encoder
    from models.embed.fit import fit_embed, publish_embed
    from models.pipeline import train_version
    from models.registry import Registry
    from models.stage import registry_key
    from workers.sim.synth import generate

    registry = Registry(settings.registry_root)
    progress("cascade: training tier 1 and tier 2 on 4,000 synthetic tickets")
    items = generate(task.name, 4000, seed=7)
    texts = [i.text_of(task.text_fields) for i in items]
    labels = [i.metadata["oracle_label"] for i in items]
    t1 = train_version(texts, labels, task=task, settings=settings, seed=1)
    first = registry.publish(task.name, t1.model, t1.manifest())
    sample = generate(task.name, 2000, seed=99)
    student = registry.load_student(task.name, first.version)
    probs = student.predict_proba([i.text_of(task.text_fields) for i in sample])
    cut = float(np.quantile(probs.max(axis=1), forward))
    data = t1.manifest()
    thresholds = [cut] * len(t1.labels)
    data = {**data, "thresholds": thresholds,
            "policy": {**data["policy"], "thresholds": thresholds}}
    tier1 = registry.publish(task.name, t1.model, data)
    registry.promote(task.name, tier1.version)

    encoder = TextEncoder.load(ensure_encoder(settings.cache_dir), threads=settings.embed_threads,
                               precision=settings.embed_precision)
    vectors = encoder.encode(texts, 64)
    index = {name: i for i, name in enumerate(t1.labels)}
    y = np.array([index[label] for label in labels])
    t2 = fit_embed(vectors[:3000], y[:3000], vectors[3000:], y[3000:], t1.labels,
                   task.critical_labels, settings)
    tier2 = publish_embed(registry, task.name, t2, promote=True)
    return [registry.show(task.name, tier1.version),
            registry.show(registry_key(task.name, "embed"), tier2.version)]


def _start(settings: Settings, argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    env = child_env(settings, DISTILLERY_METRICS_PORT="0")
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.cli", *argv,
                                 "--loglevel", "WARNING"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


async def cascade_run(s: Settings, task: TaskConfig, cfg: BenchConfig,
                      values: list[tuple[bytes, bytes]], workdir: Path, manifests: list[Any],
                      latency: bool, progress: Progress) -> dict[str, float]:
    """The cascade over ``values`` as a backlog, then (if asked) at the offered rate."""
    from streams.announce import announce_manifest
    from streams.refine import group_id
    from streams.topics import create_topics
    from workers.bench.stream import (
        _collect,
        _key_of,
        _produce,
        _rate,
        _wait_for_group,
        latency_run,
    )
    from workers.runtime.procs import free_port

    w = s.model_copy(update={"topic_prefix": f"{s.topic_prefix}cascade.",
                             "tasks_file": tasks_file(workdir, cascade=True),
                             "web_port": free_port()})
    create_topics(w)
    for manifest in manifests:
        announce_manifest(w, manifest)
    classify = _start(w, ["worker", "classify", "--task", task.name], workdir / "classify.log")
    refine = _start(w, ["worker", "refine", "--task", task.name], workdir / "refine.log")
    procs = [classify, refine]
    outputs = [w.topic(task.results_topic), w.topic(task.teacher_topic)]
    figures: dict[str, float] = {}
    try:
        await asyncio.to_thread(_wait_for_group, w, f"{w.topic_prefix}distillery-classify", 1,
                                procs)
        await asyncio.to_thread(_wait_for_group, w, group_id(w, task), 1, procs)
        cpu = [cpu_seconds(p.pid) for p in procs]
        await _produce(w, w.topic(task.input_topic), values)
        written = time.time() * 1000.0
        n = len(values)
        figures["events_per_s"] = _rate(await _collect(w, outputs, n, 600, _key_of), written)
        used = [cpu_seconds(p.pid) - before for p, before in zip(procs, cpu, strict=True)]
        forwarded = await asyncio.to_thread(count_keys, w, w.topic(task.refine_topic))
        figures["forwarded_share"] = forwarded / n
        figures["tier1_cpu_ms_per_item"] = 1000.0 * used[0] / n
        figures["tier2_cpu_ms_per_item"] = 1000.0 * used[1] / max(forwarded, 1)
        if latency:
            rate = cfg.cascade_offered_rate
            progress(f"cascade latency at {rate:.0f} events/s for {cfg.latency_seconds:.0f}s")
            p50, p99 = await latency_run(w, task, outputs, n, rate, cfg.latency_seconds,
                                         seed=998, timeout_s=300)
            figures.update(cascade_p50=p50, cascade_p99=p99)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    return figures


def count_keys(settings: Settings, topic: str) -> int:
    """Distinct keys on ``topic`` now (read from the beginning up to its end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                             **settings.kafka_python_kwargs())
    keys: set[bytes] = set()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                           or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while [tp for tp in parts if consumer.position(tp) < ends[tp]]:
            for messages in consumer.poll(timeout_ms=500, max_records=5000).values():
                keys.update(m.key for m in messages if m.key is not None)
    finally:
        consumer.close()
    return len(keys)
