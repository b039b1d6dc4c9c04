"""When the trainer refreshes: early after a cold start, then at a steady pace.

Kept apart from ``refresh`` (which imports torch) so the worker's loop can ask cheaply.
"""

from __future__ import annotations


def refresh_step(verdicts_so_far: int, first: int, every: int) -> int:
    """New verdicts to wait for before the next refresh, given the verdicts seen so far:
    ``first`` at a cold start, then as many as seen so far (the count doubles: 50, 100,
    200, 400 …), never more than ``every``.

    >>> [refresh_step(n, 50, 500) for n in (0, 50, 100, 200, 400, 800, 5000)]
    [50, 50, 100, 200, 400, 500, 500]
    """
    return max(1, min(every, max(first, verdicts_so_far)))


def due_by_verdicts(new: int, seen: int, first: int, every: int) -> bool:
    """Whether ``new`` verdicts since the last refresh, of ``seen`` stored in all, make a
    refresh due (the trainer's loop, and the backtest's lockstep barrier waiting for it)."""
    return new > 0 and new >= refresh_step(max(0, seen - new), first, every)
