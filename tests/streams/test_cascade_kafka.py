"""The cascade through Kafka: real broker, a real classify worker and a real refine worker.

Moderation with ``tiers = ["ngram", "embed"]``: tier 1 (an n-gram student trained here, its
acceptance thresholds set out of reach so that every non-critical item is tier 2's) sends
``low_confidence`` items to ``moderation.refine``; the refine worker decides what its tier-2
policy accepts (``decided_by`` student, ``model_version`` ``embed-v0001``) and forwards the
rest to ``moderation.teacher`` with both tiers' scores; an item tier 1 routes as critical (a
critical prediction, or a floor alone, even one tier 2 would clear) skips tier 2. Then a
second tier-2 version is announced on ``models`` (key ``moderation/embed``) and the running
refine worker decides with it (``embed-v0002``) without a restart. Its ``/metrics`` is scraped
after each phase: the counts and the serving version agree with the topics.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from kafka import KafkaProducer

from distillery.settings import Settings
from distillery.tasks import get_task
from models.embed.encoder import TextEncoder
from models.embed.export import ensure_encoder
from models.embed.fit import fit_embed
from models.pipeline import train_version
from models.policy import NEVER, decide
from models.registry import Registry
from models.stage import Stage, registry_key
from schemas.records import Decision, ModerationItem, TeacherRequest
from schemas.serde import decode, encode
from streams.announce import announce_manifest
from streams.topics import create_topics
from tests.streams.kit import REPO, read_all, start_classify, stop, worker_env
from workers.runtime.procs import free_port
from workers.sim.synth import generate, labels_of

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _publish(registry: Registry, key: str, model: bytes, data: dict[str, object],
             thresholds: list[float], settings: Settings, tier2: bool,
             floors: dict[str, float] | None = None) -> str:
    policy = dict(data["policy"])  # type: ignore[call-overload]
    policy["thresholds"] = thresholds
    if floors is not None:
        policy["floors"] = floors
    data = {**data, "policy": policy, "thresholds": thresholds}
    manifest = registry.publish(key, model, data)
    registry.promote(key, manifest.version)
    announce_manifest(settings, registry.show(key, manifest.version))
    return manifest.version


EVENT_MS = 1_700_000_000_000  # the inputs' event time: long before the run


def _produce(settings: Settings, items: list[ModerationItem]) -> None:
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    for i, item in enumerate(items):
        producer.send(settings.topic("moderation"), key=item.id.encode(), value=encode(item),
                      timestamp_ms=EVENT_MS + i)
    producer.flush()
    producer.close()


def _wait(settings: Settings, done: object, timeout_s: float = 150) -> tuple[
        list[Decision], list[TeacherRequest]]:
    deadline = time.monotonic() + timeout_s
    while True:
        decisions = [decode(m.value, Decision) for m in read_all(settings,
                                                                 "moderation.decisions")]
        requests = [decode(m.value, TeacherRequest) for m in read_all(settings,
                                                                      "moderation.teacher")]
        if done(decisions, requests) or time.monotonic() > deadline:  # type: ignore[operator]
            return decisions, requests
        time.sleep(1.0)


def _scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {sample with its labels: value}, the ``distillery_refine_*`` ones."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    out = {}
    for line in text.splitlines():
        if line.startswith("distillery_refine_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_cascade_through_kafka_decides_forwards_and_hot_swaps(
        kafka_settings: Settings, tmp_path: Path) -> None:
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text('[tasks.moderation]\ntiers = ["ngram", "embed"]\n', encoding="utf-8")
    settings = kafka_settings.model_copy(update={"tasks_file": tasks_file,
                                                 "student_buckets": 1 << 16})
    create_topics(settings)  # moderation.refine, now that the task enables tier 2
    task = get_task(settings, "moderation")
    items = generate("moderation", 700, seed=3)
    texts, truth = [i.text for i in items], labels_of(items)  # type: ignore[attr-defined]
    registry = Registry(settings.registry_root)

    # tier 1: a real n-gram student; its thresholds out of reach, its floors as calibrated
    t1 = train_version(texts[:600], truth[:600], task=task, settings=settings, seed=0)
    k = len(t1.labels)
    # one floor, the median critical probability of the routine predictions among the items
    # below: about half of those are flagged critical by the floor alone
    _publish(registry, "moderation", t1.model, t1.manifest(), [NEVER] * k, settings, False)
    probs = registry.load_student("moderation").predict_proba(texts[600:])
    crit_ids = [t1.labels.index(c) for c in task.critical_labels]
    routine_rows = ~np.isin(probs.argmax(axis=1), crit_ids)
    floor = float(np.median(probs[routine_rows][:, crit_ids].max(axis=1)))
    low = {c: floor for c in task.critical_labels}
    _publish(registry, "moderation", t1.model, t1.manifest(), [NEVER] * k, settings, False, low)
    student1 = registry.load_student("moderation")
    route1 = decide(student1.predict_proba(texts[600:]), student1.routing_policy(0.2))

    # tier 2: the head on sentence embeddings; v1 accepts only "ok", v2 every routine label
    encoder = TextEncoder.load(ensure_encoder(settings.cache_dir))
    vectors = encoder.encode(texts, 64)
    index = {name: i for i, name in enumerate(t1.labels)}
    y = np.array([index[t] for t in truth])
    t2 = fit_embed(vectors[:450], y[:450], vectors[450:600], y[450:600], t1.labels,
                   task.critical_labels, settings)
    key = registry_key("moderation", "embed")
    only_ok = [0.0 if name == "ok" else NEVER for name in t1.labels]
    routine = [NEVER if name in task.critical_labels else 0.0 for name in t1.labels]
    # tier 2's floors out of reach: only its critical predictions hold an item for the teacher
    high = {c: NEVER for c in task.critical_labels}
    _publish(registry, key, t2.model, t2.manifest(), only_ok, settings, True, high)
    tier2 = Stage.load(registry.serving(key).directory,  # type: ignore[union-attr]
                       encoder=lambda: encoder)
    assert tier2.version == "embed-v0001"
    route2 = decide(tier2.predict_many(texts[600:]).probs, tier2.routing_policy(0.2))

    # pick, from the last 100 items, one of each kind as the two tiers route them offline
    reasons1, reasons2 = route1.reasons(), route2.reasons()
    labels2 = [t1.labels[i] for i in route2.label_ids]
    pick = {}
    for j in range(100):
        if reasons1[j] == "critical" and not route1.by_floor[j]:
            pick.setdefault("critical", j)  # a critical prediction: straight to the teacher
        elif reasons1[j] == "critical":
            if reasons2[j] == "confident":
                pick.setdefault("floor", j)  # flagged by tier 1's floor: the teacher, though
                # tier 2 would clear it
        elif reasons2[j] == "confident":
            pick.setdefault("tier2", j)
        elif reasons2[j] == "low_confidence" and labels2[j] not in task.critical_labels:
            pick.setdefault("teacher", j)  # v2 accepts it: the hot swap's witness
    assert set(pick) == {"critical", "floor", "tier2", "teacher"}, (reasons1, reasons2)
    chosen = {kind: items[600 + j] for kind, j in pick.items()}

    classify = start_classify(settings, tmp_path / "classify.log", ("moderation",),
                              DISTILLERY_TASKS_FILE=str(tasks_file))
    refine_log = open(tmp_path / "refine.log", "ab")  # noqa: SIM115 - the child owns it
    port = free_port()
    refine = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "refine", "--task", "moderation",
         "--metrics-port", str(port)],
        env=worker_env(settings, DISTILLERY_TASKS_FILE=str(tasks_file)), cwd=REPO,
        stdout=refine_log, stderr=subprocess.STDOUT)
    try:
        _produce(settings, list(chosen.values()))
        ids = {kind: item.id for kind, item in chosen.items()}
        decisions, requests = _wait(settings, lambda d, r: ids["tier2"] in {x.id for x in d}
                                    and {ids["teacher"], ids["critical"], ids["floor"]}
                                    <= {x.id for x in r})
        by_id = {d.id: d for d in decisions}
        asked = {r.id: r for r in requests if r.reason != "audit"}
        assert ids["tier2"] in by_id, (tmp_path / "refine.log").read_text()[-3000:]
        decided = by_id[ids["tier2"]]
        assert (decided.decided_by, decided.model_version, decided.reason) == (
            "student", "embed-v0001", "confident")
        assert decided.label == labels2[pick["tier2"]] == "ok"

        forwarded = asked[ids["teacher"]]
        assert forwarded.reason == "low_confidence"
        assert forwarded.model_version == student1.version  # tier 1's scores ...
        assert forwarded.student_label == student1.labels[route1.label_ids[pick["teacher"]]]
        assert forwarded.tier2_version == "embed-v0001"  # ... and tier 2's beside them
        assert forwarded.tier2_label == labels2[pick["teacher"]]
        assert forwarded.tier2_confidence is not None
        assert ids["teacher"] not in by_id

        critical = asked[ids["critical"]]
        assert critical.reason == "critical" and critical.tier2_version is None
        refine_requests = {r.id: r for r in (decode(m.value, TeacherRequest) for m in read_all(
            settings, "moderation.refine"))}
        refined = set(refine_requests)
        assert ids["critical"] not in refined and ids["floor"] not in refined
        assert {ids["tier2"], ids["teacher"]} <= refined
        # the floor-flagged item: straight to the teacher as critical, tier 2 not asked
        flagged = asked[ids["floor"]]
        assert flagged.reason == "critical" and flagged.tier2_version is None
        assert ids["floor"] not in by_id

        # the internal topics keep each event's time (the trainer orders verdicts by it);
        # a decision is stamped when it is sent
        stamps = {m.key.decode(): m.timestamp for m in read_all(settings, "moderation")}
        for topic in ("moderation.refine", "moderation.teacher"):
            for m in read_all(settings, topic):
                assert m.timestamp == stamps[m.key.decode()], topic
        assert all(m.timestamp > EVENT_MS + 10**9
                   for m in read_all(settings, "moderation.decisions"))

        # /metrics: what it read, decided and forwarded, and the version serving
        scraped = _scrape(port)
        t = 'task="moderation"'
        audits = sum(1 for r in requests if r.reason == "audit")
        assert scraped[f"distillery_refine_items_in_total{{{t}}}"] == len(refined) == 2
        assert scraped[f"distillery_refine_decided_total{{{t}}}"] == 1
        assert scraped[f'distillery_refine_forwarded_total{{reason="low_confidence",{t}}}'] == 1
        assert scraped.get(f'distillery_refine_forwarded_total{{reason="audit",{t}}}',
                           0.0) == audits
        assert scraped[f"distillery_refine_batch_seconds_count{{{t}}}"] >= 1
        serving = f'distillery_refine_model_version_info{{{t},version="embed-v0001"}}'
        assert scraped.get(serving) == 1, [k for k in scraped if "version_info" in k]

        # hot swap: v2 accepts the item v1 forwarded; the running worker picks it up
        _publish(registry, key, t2.model, t2.manifest(), routine, settings, True, high)
        template = chosen["teacher"]
        sent: list[str] = []
        deadline = time.monotonic() + 120
        swapped: Decision | None = None
        while swapped is None and time.monotonic() < deadline:
            again = template.model_copy(update={"id": f"swap-{len(sent)}"})
            sent.append(again.id)
            _produce(settings, [again])
            time.sleep(2.0)
            got = [decode(m.value, Decision) for m in read_all(settings, "moderation.decisions")]
            swapped = next((d for d in got if d.id in sent
                            and d.model_version == "embed-v0002"), None)
        assert swapped is not None, (tmp_path / "refine.log").read_text()[-3000:]
        assert swapped.label == labels2[pick["teacher"]] and swapped.decided_by == "student"
        scraped = _scrape(port)
        assert scraped[f'distillery_refine_model_version_info{{{t},version="embed-v0002"}}'] == 1
        assert not any("embed-v0001" in name for name in scraped)
        assert scraped[f"distillery_refine_items_in_total{{{t}}}"] == 2 + len(sent)
    finally:
        codes = (stop(classify), stop(refine))
    assert codes == (0, 0), (tmp_path / "refine.log").read_text()[-3000:]
