"""The gate: may a candidate version of one stage serve? One rule set for every stage.

A stage is judged by what the *cascade* does with it, on held-out verdicts it did not train
on, with the system figures of ``models.system`` (coverage, decided accuracy, catch rate):

* ``new``    — the cascade with the candidate in this stage's place;
* ``before`` — the cascade without this stage (the stages ahead of it alone; None for the
  first stage: without it the teacher decides everything);
* ``old``    — the cascade with the serving version of this stage (None: nothing serves);
* ``old_own`` — the serving version's own decided part (what it alone decides, and how well).

The rules, in order:

1. the candidate decides none of what reaches its stage: it passes only to *withdraw* a
   serving version whose own decided accuracy is evidently under the target (even the
   Wilson upper bound at ``calibration_z`` is), and no critical escape rate rises
   (decision record 0002); otherwise it fails;
2. no critical label's escape rate may rise over ``before`` nor over ``old`` by more than
   ``critical_escape_tolerance``;
3. the cascade must meet ``accuracy_target`` and every ``critical_catch_target``, or, with a
   version serving, be no worse than it (decided accuracy within ``gate_tolerance``).
"""

from __future__ import annotations

from dataclasses import dataclass

from distillery.settings import Settings
from models.system import SystemMetrics


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def shortfalls(m: SystemMetrics, settings: Settings) -> list[str]:
    """What keeps these figures from meeting the targets (empty: they meet them)."""
    problems = []
    if m.decided_accuracy is None or m.coverage <= 0.0:
        problems.append(f"decides nothing at accuracy target {settings.accuracy_target}")
    elif m.decided_accuracy < settings.accuracy_target:
        problems.append(f"decided accuracy {m.decided_accuracy:.3f} is under the target "
                        f"{settings.accuracy_target}")
    for label, catch in m.catch_rate.items():
        if catch is not None and catch < settings.critical_catch_target:
            problems.append(f"critical label {label} catch rate {catch:.3f} is under the "
                            f"target {settings.critical_catch_target}")
    return problems


def escape_rises(new: SystemMetrics, old: SystemMetrics, settings: Settings) -> list[str]:
    """Critical labels whose escape rate rises from ``old`` to ``new`` beyond tolerance."""
    rises = []
    for label, escape in new.escape_rate.items():
        was = old.escape_rate.get(label)
        if escape is not None and was is not None and (
                escape > was + settings.critical_escape_tolerance):
            rises.append(f"critical label {label} escape rate rises from {was:.3f} "
                         f"to {escape:.3f}")
    return rises


def accuracy_drop(new: SystemMetrics, old: SystemMetrics, settings: Settings) -> list[str]:
    if new.decided_accuracy is not None and old.decided_accuracy is not None and (
            new.decided_accuracy < old.decided_accuracy - settings.gate_tolerance):
        return [f"decided accuracy {new.decided_accuracy:.3f} is worse than "
                f"{old.decided_accuracy:.3f} by more than {settings.gate_tolerance}"]
    return []


def evidently_under(m: SystemMetrics | None, settings: Settings) -> bool:
    """The decided part is under the accuracy target beyond doubt: even the Wilson *upper*
    bound (``calibration_z``) of its accuracy on these held-out items is below the target."""
    if m is None or m.decided_accuracy is None or m.decided_effective_n <= 0:
        return False
    from models.calibrate import wilson_lower

    n = m.decided_effective_n
    upper = 1.0 - float(wilson_lower((1.0 - m.decided_accuracy) * n, n,
                                     settings.calibration_z))
    return upper < settings.accuracy_target


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def judge(new: SystemMetrics, decides: bool, before: SystemMetrics | None,
          old: SystemMetrics | None, old_own: SystemMetrics | None, old_version: str | None,
          settings: Settings) -> Verdict:
    """The module docstring's rules; ``decides``: the candidate decides some held-out item
    that reaches its stage."""
    against = f" against serving {old_version}" if old_version else ""
    ahead = [f"{e} (over the stages before)" for e in
             (escape_rises(new, before, settings) if before is not None else [])]
    if not decides:
        if old_own is not None and evidently_under(old_own, settings) and not ahead:
            return Verdict(True, f"withdraws serving {old_version}: its decided accuracy "
                           f"{fmt(old_own.decided_accuracy)} on {old_own.n} held-out items is "
                           f"under the target {settings.accuracy_target}; this stage decides "
                           "nothing until the evidence allows")
        return Verdict(False, "decides nothing of the held-out items that reach it at accuracy "
                       f"target {settings.accuracy_target}{against}")
    problems = shortfalls(new, settings)
    blocking = list(ahead)
    if old is not None:
        blocking += escape_rises(new, old, settings)
        blocking += accuracy_drop(new, old, settings) if problems else []
    else:
        blocking += problems
    figures = f"coverage {new.coverage:.3f} at decided accuracy {fmt(new.decided_accuracy)}"
    if old is not None:
        figures = (f"coverage {old.coverage:.3f} → {new.coverage:.3f}, decided accuracy "
                   f"{fmt(old.decided_accuracy)} → {fmt(new.decided_accuracy)}")
    if before is not None:
        figures += f" (the stages before alone: coverage {before.coverage:.3f})"
    if blocking:
        return Verdict(False, "; ".join(blocking) + f"{against} — {figures}")
    why = "meets the targets" if not problems else "no regression (" + "; ".join(problems) + ")"
    return Verdict(True, f"{why}{against}: {figures}")
