"""The offline cascade measurement: tier 1 alone against tier 1 → tier 2 → teacher.

On a labelled stream split into train / calibration / test (CLINC150: its own splits, with
out-of-scope as a label; moderation: the synthetic stream in order, 60/20/20), both tiers
train on the same items, each is calibrated by ``models.calibrate.calibrate_policy`` for the
same accuracy target and critical catch target (tier 2 on the calibration items tier 1
forwards), and the test items are routed by ``models.cascade.route_cascade``. The
figures (teacher calls, decided and system accuracy, catch rate per critical label, each
tier's share) come from ``models.system``. Tier 2's embeddings are computed once per text
and kept in ``cache_dir`` (``.npy`` keyed by the texts' hash), so a re-run embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillery.settings import Settings
from models.calibrate import Calibration, calibrate_policy, softmax
from models.cascade import forwarded, route_cascade, route_metrics
from models.policy import CalibrationSample

log = logging.getLogger(__name__)
CRITICAL_CLINC = ("report_fraud", "freeze_account")
CRITICAL_MODERATION = ("self_harm", "violent_threat")


@dataclass(frozen=True)
class Split:
    texts: list[str]
    y: np.ndarray  # int label ids


@dataclass(frozen=True)
class Stream:
    name: str
    labels: list[str]
    critical: list[str]
    train: Split
    calib: Split
    test: Split


def _split(rows: Sequence[tuple[str, str]], index: dict[str, int]) -> Split:
    return Split([t for t, _ in rows], np.array([index[y] for _, y in rows], dtype=np.int64))


def clinc_stream(path: Path, critical_train: int | None = None, limit: int | None = None,
                 seed: int = 0, out_of_scope: bool = False) -> Stream:
    """CLINC150 ``data_full.json``: train / val / test (150 intents; with ``out_of_scope``,
    its oos_* items too, as the label ``oos``).

    ``critical_train`` keeps only that many training examples of each critical intent
    (the rarer variant); ``limit`` samples that many items per split (for tests)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    rng = np.random.default_rng(seed)

    def rows(*keys: str) -> list[tuple[str, str]]:
        out = [(str(t), str(y)) for k in keys for t, y in raw[k]]
        if limit is not None and limit < len(out):
            out = [out[i] for i in sorted(rng.choice(len(out), limit, replace=False))]
        return out

    oos = ("oos_",) if out_of_scope else ()
    train = rows("train", *(p + "train" for p in oos))
    if critical_train is not None:
        seen: dict[str, int] = {}
        kept = []
        for t, y in train:
            if y in CRITICAL_CLINC:
                seen[y] = seen.get(y, 0) + 1
                if seen[y] > critical_train:
                    continue
            kept.append((t, y))
        train = kept
    calib = rows("val", *(p + "val" for p in oos))
    test = rows("test", *(p + "test" for p in oos))
    labels = sorted({y for _, y in train + calib + test})
    index = {y: i for i, y in enumerate(labels)}
    return Stream("clinc150", labels, list(CRITICAL_CLINC), _split(train, index),
                  _split(calib, index), _split(test, index))


def moderation_stream(n: int, seed: int = 0) -> Stream:
    """The synthetic moderation stream (``distillery generate --task moderation``), in order."""
    from workers.sim.synth import generate, labels_of

    items = generate("moderation", n, seed=seed)
    rows = [(str(getattr(i, "text", "")), y) for i, y in zip(items, labels_of(items),
                                                              strict=True)]
    a, b = int(n * 0.6), int(n * 0.8)
    labels = sorted({y for _, y in rows})
    index = {y: i for i, y in enumerate(labels)}
    return Stream("moderation", labels, list(CRITICAL_MODERATION), _split(rows[:a], index),
                  _split(rows[a:b], index), _split(rows[b:], index))


def cached_embeddings(texts: list[str], encode: Callable[[list[str]], np.ndarray],
                      cache_dir: Path, kind: str) -> np.ndarray:
    """``encode(texts)``, each distinct text embedded once ever: vectors are kept per text
    in ``cache_dir/<kind>.npz`` (keys: sha256 of the text) and only new texts are encoded."""
    path = cache_dir / f"{kind}.npz"
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:24] for t in texts]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as stored:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if todo:
        started = time.perf_counter()
        fresh = encode([t for _, t in todo])
        log.info("embedded %d new texts (%s) in %.1f s", len(todo), kind,
                 time.perf_counter() - started)
        known.update(zip([k for k, _ in todo], fresh, strict=True))
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(path, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def tier1_logits(stream: Stream, settings: Settings, threads: int = 1,
                 buckets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train the n-gram student on ``train`` (early stop on ``calib``); calib and test logits."""
    from models.featurize import Featurizer, FeaturizerConfig
    from models.train import TrainConfig, logits_of, train_net

    featurizer = Featurizer(FeaturizerConfig(buckets=buckets or settings.student_buckets,
                                             max_ids=settings.student_max_ids))
    names = stream.labels
    trained = train_net(featurizer, stream.train.texts, [names[i] for i in stream.train.y],
                        stream.calib.texts, [names[i] for i in stream.calib.y],
                        TrainConfig(dim=settings.student_dim, threads=threads), names)
    return (logits_of(trained.net, featurizer, stream.calib.texts),
            logits_of(trained.net, featurizer, stream.test.texts))


def class_weights(y: np.ndarray, k: int, max_weight: float = 20.0) -> np.ndarray:
    counts = np.bincount(y, minlength=k).astype(np.float64)
    median = float(np.median(counts[counts > 0]))
    return np.clip(median / np.maximum(counts, 1.0), 1.0, max_weight)


def tier2_logits(stream: Stream, vectors: tuple[np.ndarray, np.ndarray, np.ndarray],
                 threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    from models.embed.head import train_head

    train, calib, test = vectors
    k = len(stream.labels)
    head = train_head(train, stream.train.y, k, class_weight=class_weights(stream.train.y, k),
                      threads=threads)
    return head.logits(calib), head.logits(test)


def _calibrate(logits: np.ndarray, y: np.ndarray, stream: Stream, settings: Settings,
               target: float) -> Calibration:
    sample = CalibrationSample(n=len(y), weight=float(len(y)), effective_n=float(len(y)),
                               audits=0, deferred=len(y), gold=len(y), critical_support={})
    return calibrate_policy(logits, y, None, stream.labels, stream.critical,
                            accuracy_target=target, catch_target=settings.critical_catch_target,
                            z=settings.calibration_z, min_support=settings.min_class_support,
                            conservative_floor=settings.critical_floor_conservative,
                            sample=sample, curve_targets=())


def compare(stream: Stream, t1: tuple[np.ndarray, np.ndarray],
            t2: tuple[np.ndarray, np.ndarray], settings: Settings,
            targets: Sequence[float], pool: bool = True) -> list[dict[str, Any]]:
    """Per accuracy target: tier 1 alone and the cascade on the test split. With ``pool``
    tier 2 decides on ``pooled_logits`` (its head and tier 1's probabilities)."""
    rows = []
    for target in targets:
        cal1 = _calibrate(t1[0], stream.calib.y, stream, settings, target)
        p1_cal = softmax(t1[0], cal1.temperature)
        fwd = forwarded(p1_cal, cal1.policy)
        p1 = softmax(t1[1], cal1.temperature)
        l2_cal, l2_test = t2
        if pool:
            l2_cal, l2_test = pooled_logits(p1_cal, l2_cal), pooled_logits(p1, l2_test)
        cal2 = _calibrate(l2_cal[fwd], stream.calib.y[fwd], stream, settings, target)
        p2 = softmax(l2_test, cal2.temperature)
        row: dict[str, Any] = {"target": target}
        truth = [stream.labels[int(i)] for i in stream.test.y]
        for name, route in (("tier1", route_cascade([(p1, cal1.policy)])),
                            ("cascade", route_cascade([(p1, cal1.policy),
                                                       (p2, cal2.policy)]))):
            m = route_metrics(route, truth, stream.labels, stream.critical)
            shares = route.shares()
            row[name] = {"teacher_call_fraction": m.teacher_call_fraction,
                         "coverage": m.coverage, "decided_accuracy": m.decided_accuracy,
                         "system_accuracy": m.system_accuracy, "catch_rate": m.catch_rate,
                         "shares": {"tier1": shares.get("stage1", 0.0),
                                    "tier2": shares.get("stage2", 0.0),
                                    "teacher": shares["teacher"]}}
        rows.append(row)
    return rows


def pooled_logits(probs1: np.ndarray, logits2: np.ndarray) -> np.ndarray:
    """Tier 2's scores with tier 1's evidence: log p₁ + log softmax(tier-2 logits), a
    product of experts (calibration then fits its own temperature over the sum)."""
    z = logits2 - logits2.max(axis=1, keepdims=True)
    log2 = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return np.asarray(np.log(np.clip(probs1, 1e-12, 1.0)) + log2, dtype=np.float32)


def bare_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean()) if len(y) else 0.0
