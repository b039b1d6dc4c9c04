"""The backtest's figures: system metrics, the calls-vs-accuracy curve, "does it pay".

``figures_of`` turns the final decision per item into ``BacktestFigures``: the keys of
docs/reference/topics.md (``accuracy``, ``macro_f1``, ``slices``, ``critical_recall``,
``teacher_call_fraction``, ``discounted_accuracy``, ``coverage``, ``decided_accuracy``,
``catch_rate``) plus the curve and the economics.

The curve: every served version's manifest holds the thresholds its calibration chose for
a grid of accuracy targets; the items each version routed are re-decided under each grid
point with the probabilities it gave them. Points other than the chosen target are
counterfactual in one way — the verdicts, and so the later versions, came from the chosen
policy — which the output says. A cascade gets no such curve (tier 2 scored only what tier 1
forwarded under the chosen target); ``backtest --sweep`` (``workers.offline.sweep``)
measures one, a run per target. ``tier_decided_accuracy`` is each tier's own accuracy.

The verdict weighs the teacher cost saved (volume × price per call × calls avoided)
against the pipeline's running cost (``settings.pipeline_cost_per_day``) and the accuracy
given up against the teacher alone; it never says "pays" when the student decides under
``MIN_PAYING_COVERAGE`` of the stream or the saving does not cover the running cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.calibrate import CURVE_TARGETS
from models.evaluate import SliceFigures, slice_report
from models.policy import curve_policy, decide, policy_from_manifest
from models.system import SystemMetrics, system_metrics
from streams.routing import audit_selected

if TYPE_CHECKING:
    from workers.offline.backtest import BacktestConfig, HistoryRow

LAMBDAS = ("0.05", "0.1", "0.2", "0.3")
# Re-deciding a cascade under other targets would need tier 2's scores for items tier 1
# did not forward under the chosen one; the measured curve is ``backtest --sweep``'s.
CASCADE_CURVE_NOTE = ("no re-decided curve for a cascade (tier 2 saw only what tier 1 "
                      "forwarded under the chosen target): backtest --sweep measures one")
MIN_PAYING_COVERAGE = 0.05
PROMPT_TOKENS, TOKENS_PER_LABEL, OUTPUT_TOKENS = 150, 12, 8  # a classification prompt


@dataclass
class Served:
    """A version that served during the backtest, from item ``start`` on."""

    version: str
    start: int
    manifest: dict[str, Any]
    probs: list[np.ndarray] = field(default_factory=list)  # per batch, in item order


class CurveFigure(TypedDict):
    target: float
    teacher_call_fraction: float
    coverage: float
    decided_accuracy: float | None
    system_accuracy: float
    catch_rate: dict[str, float | None]
    chosen: bool


class Economics(TypedDict):
    volume_per_day: float
    volume_source: str  # "given" or "the history's size"
    teacher_cost_per_call: float
    price_source: str  # "given" or "estimated from the token prices"
    teacher_only_cost_per_day: float
    distilled_teacher_cost_per_day: float
    teacher_saving_per_day: float
    pipeline_cost_per_day: float
    net_saving_per_day: float
    break_even_volume_per_day: float | None
    accuracy_given_up: float
    pays: bool
    verdict: str


class BacktestFigures(TypedDict):
    n: int
    teacher_call_fraction: float
    student_share: float
    coverage: float
    decided_accuracy: float | None
    system_accuracy: float
    accuracy: float
    teacher_only_accuracy: float
    accuracy_against: str
    macro_f1: float
    discounted_accuracy: dict[str, float]
    teacher_only_discounted_accuracy: dict[str, float]
    slices: dict[str, SliceFigures]
    critical_recall: dict[str, float]
    catch_rate: dict[str, float | None]
    escape_rate: dict[str, float | None]
    accuracy_target: float
    first_served_at: int | None  # items into the stream when a student first served
    models_promoted: int
    refreshes: list[dict[str, Any]]
    curve: list[CurveFigure]
    curve_note: str
    economics: Economics
    tiers: list[str]  # the student tiers the backtest ran: ["ngram"] or ["ngram", "embed"]
    tier_shares: dict[str, float]  # share of the items each decided: tier1, tier2, teacher
    tier_decided_accuracy: dict[str, float | None]  # accuracy of tier1's, tier2's decisions
    teacher_share_by_tenth: list[float]  # the teacher's share of each tenth of the history


def price_per_call(settings: Settings, n_labels: int, texts: Sequence[str]) -> float:
    """A classification call's price from the token prices: a prompt, the labels, the text."""
    chars = float(np.mean([len(t) for t in texts])) if texts else 0.0
    tokens_in = PROMPT_TOKENS + TOKENS_PER_LABEL * n_labels + chars / 4.0
    return (tokens_in * settings.teacher_price_in_per_mtok
            + OUTPUT_TOKENS * settings.teacher_price_out_per_mtok) / 1e6


def economics(cfg: BacktestConfig, settings: Settings, task: TaskConfig,
              history: Sequence[HistoryRow], system: SystemMetrics,
              teacher_only_accuracy: float) -> Economics:
    volume = cfg.volume_per_day if cfg.volume_per_day is not None else float(len(history))
    price = (cfg.teacher_cost_per_call if cfg.teacher_cost_per_call is not None
             else price_per_call(settings, len(task.labels), [r.text for r in history]))
    fraction = system.teacher_call_fraction
    saving = volume * price * (1.0 - fraction)
    running = settings.pipeline_cost_per_day
    net = saving - running
    avoided_per_item = price * (1.0 - fraction)
    break_even = running / avoided_per_item if avoided_per_item > 0 else None
    given_up = teacher_only_accuracy - system.system_accuracy
    allowed = 1.0 - settings.accuracy_target
    if system.coverage < MIN_PAYING_COVERAGE:
        pays, why = False, (f"does not pay: the student decides only {system.coverage:.1%} "
                            "of the stream")
    elif net <= 0:
        where = f"; it would above {break_even:,.0f} items a day" if break_even else ""
        pays, why = False, (f"does not pay at {volume:,.0f} items a day: the teacher saving "
                            f"{saving:,.2f} does not cover the pipeline's {running:,.2f} a "
                            f"day{where}")
    elif given_up > allowed:
        pays, why = False, (f"saves {net:,.2f} a day but gives up {given_up:.3f} accuracy, "
                            f"more than the {allowed:.3f} the accuracy target allows")
    else:
        pays, why = True, (f"pays: saves {net:,.2f} a day net of the pipeline's "
                           f"{running:,.2f}, giving up {max(given_up, 0.0):.3f} accuracy")
    return Economics(
        volume_per_day=volume,
        volume_source="given" if cfg.volume_per_day is not None else "the history's size",
        teacher_cost_per_call=price,
        price_source=("given" if cfg.teacher_cost_per_call is not None
                      else "estimated from the token prices"),
        teacher_only_cost_per_day=volume * price,
        distilled_teacher_cost_per_day=volume * price * fraction,
        teacher_saving_per_day=saving, pipeline_cost_per_day=running,
        net_saving_per_day=net, break_even_volume_per_day=break_even,
        accuracy_given_up=given_up, pays=pays, verdict=why)


def _stream_system(history: Sequence[HistoryRow], truth: list[str], decided: np.ndarray,
                   labels: list[str | None], called: np.ndarray,
                   critical: Sequence[str]) -> SystemMetrics:
    return system_metrics(truth, decided, labels, critical=critical,
                          teacher=[r.teacher for r in history], called=called)


def curve_of(history: Sequence[HistoryRow], truth: list[str], served: Sequence[Served],
             cfg: BacktestConfig, chosen: float) -> list[CurveFigure]:
    """System figures over the stream for each accuracy target of the grid (see above)."""
    n = len(history)
    out: list[CurveFigure] = []
    audited = np.array([audit_selected(r.id, cfg.audit_rate) for r in history], dtype=bool)
    for target in sorted({*CURVE_TARGETS, chosen}):
        decided = np.zeros(n, dtype=bool)
        labels: list[str | None] = [None] * n
        for s in served:
            if not s.probs:
                continue
            probs = np.concatenate(s.probs)
            policy = (curve_policy(s.manifest, target, cfg.critical_floor)
                      or policy_from_manifest(s.manifest, cfg.critical_floor))
            d = decide(probs, policy)
            names = policy.labels
            decided[s.start:s.start + len(probs)] = d.decided
            for j, i in enumerate(d.label_ids):
                labels[s.start + j] = names[int(i)]
        m = _stream_system(history, truth, decided, labels, ~decided | (decided & audited),
                           cfg.critical)
        out.append(CurveFigure(target=float(target),
                               teacher_call_fraction=m.teacher_call_fraction,
                               coverage=m.coverage, decided_accuracy=m.decided_accuracy,
                               system_accuracy=m.system_accuracy, catch_rate=m.catch_rate,
                               chosen=abs(target - chosen) < 1e-9))
    return out


def figures_of(history: Sequence[HistoryRow], task: TaskConfig, cfg: BacktestConfig,
               settings: Settings, decided: list[str], by: list[str], calls: int,
               refreshes: list[dict[str, Any]],
               served: Sequence[Served] = (), tiers: Sequence[str] = ()) -> BacktestFigures:
    """The backtest's figures from the final decision per item and the teacher calls made.
    ``tiers`` names who decided each item (``tier1``, ``tier2``, ``teacher``); without it
    every student decision is tier 1's."""
    n = len(history)
    who = list(tiers) or ["tier1" if b == "student" else "teacher" for b in by]
    truth = [r.gold if r.gold is not None else r.teacher for r in history]
    report = slice_report(truth, decided, task.label_names, cfg.critical)
    teacher_only = slice_report(truth, [r.teacher for r in history], task.label_names,
                                cfg.critical)
    student = np.array([b == "student" for b in by], dtype=bool)
    system = system_metrics(truth, student, [d if s else None for d, s in zip(
        decided, student, strict=True)], critical=cfg.critical,
        teacher=[r.teacher for r in history])
    fraction = calls / n if n else 0.0
    system = SystemMetrics(**{**system.as_dict(), "teacher_call_fraction": fraction})
    return BacktestFigures(
        n=n,
        teacher_call_fraction=fraction,
        student_share=system.coverage,
        coverage=system.coverage,
        decided_accuracy=system.decided_accuracy,
        system_accuracy=system.system_accuracy,
        accuracy=report["accuracy"],
        teacher_only_accuracy=teacher_only["accuracy"],
        accuracy_against="gold" if history and history[0].gold is not None else "teacher",
        macro_f1=report["macro_f1"],
        discounted_accuracy={lam: report["accuracy"] - float(lam) * fraction
                             for lam in LAMBDAS},
        teacher_only_discounted_accuracy={lam: teacher_only["accuracy"] - float(lam)
                                          for lam in LAMBDAS},
        slices=report["slices"],
        critical_recall=report["critical_recall"],
        catch_rate=system.catch_rate,
        escape_rate=system.escape_rate,
        accuracy_target=settings.accuracy_target,
        first_served_at=served[0].start if served else None,
        models_promoted=sum(1 for r in refreshes if r["promoted"]),
        refreshes=[{k: v for k, v in r.items() if k != "report"} for r in refreshes],
        curve=curve_of(history, truth, served, cfg, settings.accuracy_target)
        if served and not task.cascade else [],
        curve_note=(CASCADE_CURVE_NOTE if task.cascade else
                    "each point re-decides the items every served version routed, under the "
                    "thresholds its calibration chose for that target; the versions "
                    "themselves were trained on the verdicts of the chosen target"),
        economics=economics(cfg, settings, task, history, system, teacher_only["accuracy"]),
        tiers=list(task.tiers),
        tier_shares={t: (who.count(t) / n if n else 0.0) for t in ("tier1", "tier2", "teacher")},
        tier_decided_accuracy={t: _accuracy_of(truth, decided, who, t)
                               for t in ("tier1", "tier2")},
        teacher_share_by_tenth=_by_tenth(who),
    )


def _by_tenth(who: Sequence[str]) -> list[float]:
    """The teacher's share of the decisions in each tenth of the history, in order: where
    the calls go (the cold start, then the learnt stream)."""
    n = len(who)
    edges = [round(i * n / 10) for i in range(11)]
    return [sum(w == "teacher" for w in who[a:b]) / (b - a) if b > a else 0.0
            for a, b in zip(edges, edges[1:], strict=False)]


def _accuracy_of(truth: Sequence[str], decided: Sequence[str], who: Sequence[str],
                 tier: str) -> float | None:
    """Accuracy of the decisions ``tier`` made (None if it decided nothing)."""
    mine = [d == t for d, t, w in zip(decided, truth, who, strict=True) if w == tier]
    return sum(mine) / len(mine) if mine else None
