"""The later stages of a refresh: each stage after the first, trained and gated as a cascade.

For a task whose ``tiers`` name more than one stage, each refresh (``refresh_once``), after
the first stage, trains the next (today the ``embed`` stage) from the same verdicts:

* its head (``models.embed.fit.fit_embed``) trains on the embeddings of the first stage's
  training rows and its policy is calibrated on *what the stages before forward*: the
  held-out verdicts the version serving after this refresh hands on
  (``models.policy.Decided.handed_on``), with the held-out weights;
* embeddings come from an ``Embedder`` (the trainer's store, ``workers.trainer.embeddings``;
  a text hash cache for the backtest): only texts never seen before are encoded;
* the gate is every stage's (``models.gate.judge``) on all held-out verdicts, routed by
  ``models.cascade.route_cascade``: the cascade with the candidate against the stages before
  alone and against the cascade with the serving version;
* the version is published under ``<task>/<stage>`` whatever the gate says (with the gate's
  reason), promoted if it passed, and then announced (same key) for the refine worker.

Its report keeps the keys of earlier releases (``tier1``/``tier2`` shares).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.cascade import CascadeRoute, route_cascade, route_metrics
from models.gate import judge
from models.policy import CalibrationSample, decide
from models.registry import Manifest, Registry
from models.stage import Stage, open_session, registry_key
from workers.trainer.store import Example

log = logging.getLogger(__name__)

MIN_FORWARDED = 10  # held-out items tier 1 must forward before tier 2 is trained


class Embedder(Protocol):
    @property
    def encoded(self) -> int: ...  # texts encoded so far (the rest came from storage)

    def embed(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray: ...


def _candidate_probs(model: bytes, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    out = open_session(model, 1, "the candidate").run(["probs"],
                                                       {"embedding": x.astype(np.float32)})
    return np.asarray(out[0], dtype=np.float32)


def _sample(held: list[Example], weights: np.ndarray, critical: Sequence[str]
            ) -> CalibrationSample:
    total, squares = float(weights.sum()), float((weights * weights).sum())
    audits = sum(e.reason == "audit" for e in held)
    return CalibrationSample(
        n=len(held), weight=total, effective_n=total * total / squares if squares else 0.0,
        audits=audits, deferred=len(held) - audits, gold=sum(e.gold for e in held),
        critical_support={c: sum(e.label == c for e in held) for c in critical})


def _weighted_shares(route: CascadeRoute, weights: np.ndarray) -> dict[str, float]:
    shares = route.shares(weights)
    return {"tier1": shares.get("stage1", 0.0), "tier2": shares.get("stage2", 0.0),
            "teacher": shares["teacher"]}


def _serving(registry: Registry, key: str, labels: list[str], settings: Settings
             ) -> Stage | None:
    """The serving version of this stage (scoring ready embeddings), if its labels match
    the first stage's."""
    current = registry.serving(key)
    if current is None or list(current.labels) != labels:
        return None
    return Stage.load(current.directory, expected_sha256=current.sha256,
                      threads=settings.student_threads)


def refresh_next_stage(settings: Settings, task: TaskConfig,
                       train_rows: list[tuple[str, str]], holdout: list[tuple[str, str]],
                       weights: Sequence[float], held: list[Example],
                       ids_by_text: dict[str, str], embedder: Embedder,
                       announce: Callable[[Manifest], None] | None = None) -> dict[str, Any]:
    """Train, gate, publish (and maybe promote and announce) an embed-stage version; its
    report."""
    from models.embed.fit import fit_embed, publish_embed

    registry = Registry(settings.registry_root)
    key = registry_key(task.name, "embed")
    encoded_before = embedder.encoded
    if registry.serving(task.name) is None:
        return {"promoted": False, "version": None, "encoded": 0,
                "reason": "no first-stage version serves yet: the embed stage waits for one"}
    first = registry.load_student(task.name, threads=settings.student_threads)
    labels = list(first.labels)
    critical = [c for c in task.critical_labels if c in labels]
    index = {name: i for i, name in enumerate(labels)}
    holdout = [(t, y) for t, y in holdout]
    if not holdout or any(y not in index for _, y in holdout):
        return {"promoted": False, "version": None, "encoded": 0,
                "reason": "the held-out verdicts have labels the first stage does not know"}
    w = np.asarray(weights, dtype=np.float64)
    probs1 = first.predict_proba([t for t, _ in holdout])
    policy1 = first.routing_policy(settings.critical_floor)
    fwd = decide(probs1, policy1).handed_on()
    n_fwd = int(fwd.sum())
    if n_fwd < MIN_FORWARDED:
        return {"promoted": False, "version": None, "encoded": 0, "n_forwarded": n_fwd,
                "reason": f"the first stage ({first.version}) forwards {n_fwd} held-out "
                          f"items, under {MIN_FORWARDED}: nothing to train the embed stage for"}
    rows = [(t, y) for t, y in train_rows if y in index]
    train_x = embedder.embed([ids_by_text.get(t, "bootstrap") for t, _ in rows],
                             [t for t, _ in rows])
    train_y = np.array([index[y] for _, y in rows], dtype=np.int64)
    fwd_rows = np.flatnonzero(fwd)
    hold_texts = [holdout[i][0] for i in fwd_rows]
    hold_x = embedder.embed([ids_by_text.get(t, "bootstrap") for t in hold_texts], hold_texts)
    hold_y = np.array([index[holdout[i][1]] for i in fwd_rows], dtype=np.int64)
    sample = (_sample([held[i] for i in fwd_rows], w[fwd_rows], critical)
              if len(held) == len(holdout) else None)
    result = fit_embed(train_x, train_y, hold_x, hold_y, labels, critical, settings,
                       weights=w[fwd_rows], sample=sample, threads=settings.student_threads,
                       memory_texts=[t for t, _ in rows] if settings.verdict_memory else None)

    truth = [y for _, y in holdout]
    probs2 = np.zeros_like(probs1)
    probs2[fwd_rows] = _candidate_probs(result.model, hold_x)
    route = route_cascade([(probs1, policy1), (probs2, result.calibration.policy)])
    cascade = route_metrics(route, truth, labels, critical, w)
    before = route_metrics(route_cascade([(probs1, policy1)]), truth, labels, critical, w)
    serving = _serving(registry, key, labels, settings)
    old = old_own = None
    if serving is not None:
        old_probs = np.zeros_like(probs1)
        old_probs[fwd_rows] = serving.predict_features({"embedding": hold_x})
        old_route = route_cascade([(probs1, policy1),
                                   (old_probs, serving.routing_policy(settings.critical_floor))])
        old = route_metrics(old_route, truth, labels, critical, w)
        old_own = route_metrics(old_route, truth, labels, critical, w, only=2)
    old_version = serving.version if serving is not None else None
    n_own = int((route.stage == 2).sum())
    verdict = judge(cascade, n_own > 0, before, old, old_own, old_version, settings)
    reason = f"{verdict.reason}; the embed stage decides {n_own} held-out items"
    manifest = publish_embed(registry, task.name, result, promote=verdict.passed, gate={
        "passed": verdict.passed, "reason": reason, "against": old_version,
        "tier1_version": first.version, "cascade_system": cascade.as_dict(),
        "tier1_system": before.as_dict(),
        "serving_system": old.as_dict() if old is not None else None})
    log.info("task %s: embed stage %s %s (%s)", task.name, manifest.version,
             "promoted" if verdict.passed else "published, not promoted", reason)
    if verdict.passed and announce is not None:
        announce(registry.show(key, manifest.version))
    return {"promoted": verdict.passed, "version": manifest.version, "reason": reason,
            "tier1_version": first.version, "n_train": len(rows), "n_forwarded": n_fwd,
            "n_holdout": len(holdout), "encoded": embedder.encoded - encoded_before,
            "shares": _weighted_shares(route, w), "system": cascade.as_dict(),
            "tier1_system": before.as_dict(),
            "serving_system": old.as_dict() if old is not None else None,
            "train_labels": dict(sorted(Counter(y for _, y in rows).items()))}


# the refresh of each stage kind that can follow the first, by its name in ``task.tiers``
LATER_STAGES: dict[str, Callable[..., dict[str, Any]]] = {"embed": refresh_next_stage}
