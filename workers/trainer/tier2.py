"""The tier-2 half of a refresh: the sentence-embedding head, trained and gated as a cascade.

For a task whose ``tiers`` include ``embed``, each refresh (``refresh_once``), after tier 1,
also trains tier 2 from the same verdicts:

* the head (``models.embed.train2.fit_tier2``) trains on the embeddings of tier 1's training
  rows (same rows, same oversampling) and its policy is calibrated on *what tier 1 forwards*:
  the held-out verdicts the tier-1 version serving after this refresh leaves undecided and
  does not route as critical (``models.policy.Decided.handed_on``), with the held-out weights
  (tier-1 audits for tier 1's accepted region, tier-2 audits for tier 2's);
* embeddings come from an ``Embedder`` (the trainer's store, ``workers.trainer.embeddings``;
  a text hash cache for the backtest): only texts never seen before are encoded;
* the gate judges the cascade on all held-out verdicts with the system metrics
  (``models.system``: coverage, decided accuracy, catch rate), routed by
  ``models.embed.cascade.route_cascade``: tier 2 must decide some of what tier 1 forwards;
  no critical escape rate may rise over tier 1 alone's (nor over the serving cascade's);
  the cascade must meet the accuracy and catch targets (``models.pipeline``'s rules) or be
  no worse than the serving cascade;
* the version is published under ``<task>/embed`` whatever the gate says (with the gate's
  reason), promoted if it passed, and then announced (key ``<task>/embed``) for the refine
  worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.calibrate import NOTHING
from models.embed.cascade import CascadeRoute, earlier_part, route_cascade
from models.pipeline import _meets, _regressions, evidently_under
from models.policy import CalibrationSample, DecisionPolicy, decide, policy_from_manifest
from models.registry import Manifest, Registry
from models.system import SystemMetrics, system_metrics
from workers.trainer.store import Example

log = logging.getLogger(__name__)

MIN_FORWARDED = 10  # held-out items tier 1 must forward before tier 2 is trained


class Embedder(Protocol):
    @property
    def encoded(self) -> int: ...  # texts encoded so far (the rest came from storage)

    def embed(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray: ...


def _head_probs(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    if len(x) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["probs"], {"embedding": x.astype(np.float32)})[0],
                      dtype=np.float32)


def _sample(held: list[Example], weights: np.ndarray, critical: Sequence[str]
            ) -> CalibrationSample:
    total, squares = float(weights.sum()), float((weights * weights).sum())
    audits = sum(e.reason == "audit" for e in held)
    return CalibrationSample(
        n=len(held), weight=total, effective_n=total * total / squares if squares else 0.0,
        audits=audits, deferred=len(held) - audits, gold=sum(e.gold for e in held),
        critical_support={c: sum(e.label == c for e in held) for c in critical})


def _metrics(route: CascadeRoute, truth: list[str], labels: list[str],
             critical: Sequence[str], weights: np.ndarray) -> SystemMetrics:
    return system_metrics(truth, route.decided, [labels[int(i)] for i in route.label_ids],
                          critical=critical, weights=weights.tolist())


def _weighted_shares(route: CascadeRoute, weights: np.ndarray) -> dict[str, float]:
    total = float(weights.sum()) or 1.0
    return {name: float(weights[route.tier == code].sum() / total)
            for name, code in (("tier1", 1), ("tier2", 2), ("teacher", 0))}


def _serving_tier2(registry: Registry, key: str, labels: list[str], settings: Settings
                   ) -> tuple[Manifest, bytes, DecisionPolicy] | None:
    """The serving tier-2 version (head bytes, policy), if its labels match tier 1's."""
    from models.runtime import MODEL_FILE

    current = registry.serving(key)
    if current is None or list(current.labels) != labels:
        return None
    policy = policy_from_manifest(current.data, settings.critical_floor)
    return current, (current.directory / MODEL_FILE).read_bytes(), policy


def refresh_tier2(settings: Settings, task: TaskConfig, train_rows: list[tuple[str, str]],
                  holdout: list[tuple[str, str]], weights: Sequence[float],
                  held: list[Example], ids_by_text: dict[str, str], embedder: Embedder,
                  announce: Callable[[Manifest], None] | None = None) -> dict[str, Any]:
    """Train, gate, publish (and maybe promote and announce) a tier-2 version; its report."""
    from models.embed.tier2 import registry_key
    from models.embed.train2 import fit_tier2, publish_tier2

    registry = Registry(settings.registry_root)
    key = registry_key(task.name)
    encoded_before = embedder.encoded
    if registry.serving(task.name) is None:
        return {"promoted": False, "version": None, "encoded": 0,
                "reason": "no tier-1 version serves yet: tier 2 waits for one"}
    student1 = registry.load_student(task.name, threads=settings.student_threads)
    labels = list(student1.labels)
    critical = [c for c in task.critical_labels if c in labels]
    index = {name: i for i, name in enumerate(labels)}
    holdout = [(t, y) for t, y in holdout]
    if not holdout or any(y not in index for _, y in holdout):
        return {"promoted": False, "version": None, "encoded": 0,
                "reason": "the held-out verdicts have labels tier 1 does not know"}
    w = np.asarray(weights, dtype=np.float64)
    probs1 = student1.predict_proba([t for t, _ in holdout])
    policy1 = student1.routing_policy(settings.critical_floor)
    onward = settings.cascade_floors_onward
    d1 = decide(probs1, policy1)
    fwd = d1.handed_on(onward)
    n_fwd = int(fwd.sum())
    if n_fwd < MIN_FORWARDED:
        return {"promoted": False, "version": None, "encoded": 0, "n_forwarded": n_fwd,
                "reason": f"tier 1 ({student1.version}) forwards {n_fwd} held-out items, "
                          f"under {MIN_FORWARDED}: nothing to train tier 2 for"}
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
    truth_ids = np.array([index[y] for _, y in holdout], dtype=np.int64)
    result = fit_tier2(train_x, train_y, hold_x, hold_y, labels, critical, settings,
                       weights=w[fwd_rows], sample=sample, threads=settings.student_threads,
                       earlier=(earlier_part(d1, labels, truth_ids, w, critical, onward)
                                if settings.cascade_joint_calibration else NOTHING),
                       memory_texts=[t for t, _ in rows] if settings.verdict_memory else None)

    truth = [y for _, y in holdout]
    probs2 = np.zeros_like(probs1)
    probs2[fwd_rows] = _head_probs(result.model, hold_x)
    route = route_cascade(probs1, policy1, probs2, result.calibration.policy, onward)
    alone = route_cascade(probs1, policy1, None, None)
    cascade = _metrics(route, truth, labels, critical, w)
    tier1 = _metrics(alone, truth, labels, critical, w)
    serving = _serving_tier2(registry, key, labels, settings)
    old: SystemMetrics | None = None
    old_stage: SystemMetrics | None = None  # the serving tier 2's own decided part
    if serving is not None:
        old_probs = np.zeros_like(probs1)
        old_probs[fwd_rows] = _head_probs(serving[1], hold_x)
        old_route = route_cascade(probs1, policy1, old_probs, serving[2], onward)
        old = _metrics(old_route, truth, labels, critical, w)
        mine = old_route.tier == 2
        old_stage = system_metrics([truth[i] for i in np.flatnonzero(mine)],
                                   np.ones(int(mine.sum()), dtype=bool),
                                   [labels[int(i)] for i in old_route.label_ids[mine]],
                                   weights=w[mine].tolist())
    passed, reason = _gate(route, cascade, tier1, old, serving[0].version if serving else None,
                           settings, old_stage)
    manifest = publish_tier2(registry, task.name, result, promote=passed, gate={
        "passed": passed, "reason": reason, "against": serving[0].version if serving else None,
        "tier1_version": student1.version, "cascade_system": cascade.as_dict(),
        "tier1_system": tier1.as_dict(),
        "serving_system": old.as_dict() if old is not None else None})
    log.info("task %s: tier 2 %s %s (%s)", task.name, manifest.version,
             "promoted" if passed else "published, not promoted", reason)
    if passed and announce is not None:
        announce(registry.show(key, manifest.version))
    return {"promoted": passed, "version": manifest.version, "reason": reason,
            "tier1_version": student1.version, "n_train": len(rows), "n_forwarded": n_fwd,
            "n_holdout": len(holdout), "encoded": embedder.encoded - encoded_before,
            "shares": _weighted_shares(route, w), "system": cascade.as_dict(),
            "tier1_system": tier1.as_dict(),
            "serving_system": old.as_dict() if old is not None else None,
            "train_labels": dict(sorted(Counter(y for _, y in rows).items()))}


def _gate(route: CascadeRoute, cascade: SystemMetrics, tier1: SystemMetrics,
          old: SystemMetrics | None, old_version: str | None,
          settings: Settings, old_stage: SystemMetrics | None = None) -> tuple[bool, str]:
    """May this tier-2 version serve? (the module docstring's rules)."""
    n_tier2 = int((route.tier == 2).sum())
    if n_tier2 == 0:
        if evidently_under(old_stage, settings) and not _regressions(cascade, tier1,
                                                                     settings)[0]:
            measured = _fmt(old_stage.decided_accuracy if old_stage else None)
            return True, (f"withdraws serving {old_version}: behind this tier 1 its decided "
                          f"accuracy would be {measured}, under the target "
                          f"{settings.accuracy_target}; tier 2 decides nothing until the "
                          "evidence allows")
        return False, ("decides none of the held-out items tier 1 forwards at accuracy "
                       f"target {settings.accuracy_target}")
    blocking = [f"{e} (over tier 1 alone)" for e in _regressions(cascade, tier1, settings)[0]]
    problems = _meets(cascade, settings)
    if old is not None:
        escapes, accuracy = _regressions(cascade, old, settings)
        blocking += [f"{e} (over serving {old_version})" for e in escapes]
        blocking += accuracy if problems else []
    elif problems:
        blocking += problems
    summary = (f"the cascade decides {cascade.coverage:.1%} (tier 1 alone "
               f"{tier1.coverage:.1%}) at decided accuracy {_fmt(cascade.decided_accuracy)}; "
               f"tier 2 decides {n_tier2} held-out items")
    if blocking:
        return False, "; ".join(blocking) + f" — {summary}"
    why = "meets the targets" if not problems else "no regression (" + "; ".join(problems) + ")"
    return True, f"{why}: {summary}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
