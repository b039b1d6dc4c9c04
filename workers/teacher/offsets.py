"""Which offset of each partition may be committed, with requests finishing out of order.

A partition's committable offset is its oldest request still in hand, or one past the
newest request seen when none is: every earlier request's outputs are acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[Any, set[int]] = {}
        self._next: dict[Any, int] = {}
        self._committed: dict[Any, int] = {}
        self._generation: dict[Any, int] = {}
        self._epoch = 0

    def start(self, tp: Any, offset: int) -> int:
        """Track a request; returns the token ``done`` wants back."""
        if tp not in self._pending:
            self._epoch += 1
            self._generation[tp] = self._epoch
            self._pending[tp] = set()
        self._pending[tp].add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        return self._generation[tp]

    def done(self, tp: Any, offset: int, token: int) -> None:
        """Mark a request finished; ignored if its partition was revoked since it started."""
        if self._generation.get(tp) == token:
            self._pending[tp].discard(offset)

    def pending(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def committable(self) -> dict[Any, int]:
        """Offsets to commit now (only those that moved since the last commit)."""
        out: dict[Any, int] = {}
        for tp, pending in self._pending.items():
            offset = min(pending) if pending else self._next[tp]
            if self._committed.get(tp) != offset:
                out[tp] = offset
        return out

    def committed(self, offsets: dict[Any, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
            self._generation.pop(tp, None)
