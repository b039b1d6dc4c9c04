"""Call policies around the teacher, as plain classes with an injectable clock.

- ``RetryPolicy``: exponential backoff with jitter for retriable failures.
- ``CircuitBreaker``: closed / open / half-open, so a dead endpoint is not hammered.
- ``Budget``: calls per minute and cost per hour over sliding windows.
- ``cost_of``: tokens from the API's ``usage`` field times per-million-token prices.

None of them sleeps or touches the network: the worker asks them and acts.
"""

from __future__ import annotations

import random
import time
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half_open"]
BREAKER_STATE_VALUE: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}


def cost_of(tokens_in: int, tokens_out: int, price_in_per_mtok: float,
            price_out_per_mtok: float) -> float:
    """The price of one call, from its token counts and prices per million tokens.

    >>> cost_of(1_000, 10, price_in_per_mtok=3.0, price_out_per_mtok=15.0)
    0.00315
    """
    return (tokens_in * price_in_per_mtok + tokens_out * price_out_per_mtok) / 1_000_000


@dataclass
class RetryPolicy:
    """``max_retries`` retries after the first attempt; delay doubles each time, with jitter.

    The delay before retry ``n`` (0-based) is drawn uniformly from
    ``[d/2, d]`` with ``d = min(cap_s, base_s * 2**n)`` ("equal jitter"), so clients that
    failed together do not retry together. A server's ``Retry-After`` raises the delay (up to
    ``cap_s``).
    """

    max_retries: int = 4
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    give_up_tries: int = 8
    give_up_s: float = 300.0

    def should_retry(self, retries_done: int) -> bool:
        return retries_done < self.max_retries

    def exhausted(self, tries: int, elapsed_s: float) -> bool:
        """An item has failed retriably ``tries`` times (probes of an open breaker not
        counted: they say the teacher is down, not that the item is bad) over
        ``elapsed_s``: give up on it once both caps are reached, so one item that always
        times out does not hold a slot and its partition's offset for ever.

        >>> RetryPolicy(give_up_tries=3, give_up_s=60).exhausted(3, 59.0)
        False
        >>> RetryPolicy(give_up_tries=3, give_up_s=60).exhausted(3, 61.0)
        True
        """
        return tries >= self.give_up_tries and elapsed_s >= self.give_up_s

    def delay(self, retries_done: int, retry_after_s: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**retries_done))
        delay = self.rng.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(self.cap_s, retry_after_s)
        return delay


class CircuitBreaker:
    """Opens after ``failures`` consecutive availability failures (timeouts, connection
    errors, 429, 5xx: ``record_failure``), or after ``rejections`` consecutive non-retriable
    answers of one kind (``record_rejection``: a proxy answering 400 to everything must not
    dead-letter the whole queue at full speed); after ``reset_s`` lets one probe through.

    A successful probe closes it, a failed probe opens it again for another ``reset_s``.
    ``cause`` says why it last opened: ``"unavailable"`` or ``"rejected:<kind>"``.
    """

    def __init__(self, failures: int = 5, reset_s: float = 30.0,
                 clock: Clock = time.monotonic, rejections: int = 5) -> None:
        self.failures = failures
        self.rejections = rejections
        self.reset_s = reset_s
        self.clock = clock
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._rejected_kind = ""
        self._rejected_streak = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.opened_count = 0
        self.cause = ""

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self.clock() - self._opened_at >= self.reset_s:
            self._state = "half_open"
            self._probe_out = False
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open state, only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def seconds_until_probe(self) -> float:
        if self.state != "open":
            return 0.0
        return max(0.0, self.reset_s - (self.clock() - self._opened_at))

    def record_success(self) -> None:
        self._state = "closed"
        self._consecutive = 0
        self._rejected_streak = 0
        self._probe_out = False

    def record_failure(self) -> None:
        state = self.state
        self._consecutive += 1
        if state == "half_open" or self._consecutive >= self.failures:
            self._open("unavailable")

    def record_rejection(self, kind: str) -> None:
        """A non-retriable answer of ``kind`` (an HTTP 4xx, an invalid label): the endpoint
        is up, but ``rejections`` of one kind in a row say it refuses everything."""
        state = self.state
        self._consecutive = 0
        if kind == self._rejected_kind:
            self._rejected_streak += 1
        else:
            self._rejected_kind, self._rejected_streak = kind, 1
        if self._rejected_streak >= self.rejections:
            self._open(f"rejected:{kind}")
        elif state == "half_open":
            self.record_success()

    def rejecting(self, kind: str) -> bool:
        """Is the breaker not closed because answers of ``kind`` were refused in a row? An
        item refused that way waits for the breaker instead of being given up on."""
        return self._state != "closed" and self.cause == f"rejected:{kind}"

    def release_probe(self) -> None:
        """A probe that ended without a verdict either way (e.g. the worker is stopping)."""
        self._probe_out = False

    def _open(self, cause: str) -> None:
        if self._state != "open":
            self.opened_count += 1
        self.cause = cause
        self._state = "open"
        self._opened_at = self.clock()
        self._probe_out = False


class Budget:
    """At most ``calls_per_minute`` calls in any 60 s and ``cost_per_hour`` in any 3600 s.

    A call is counted when it is made (``try_acquire``); its cost when it is known
    (``add_cost``). Calls already in flight when the cost budget runs out may overshoot it by
    at most their own cost.

    Shared by several workers (``workers.teacher.ledger``): each worker's budget counts its
    own calls live and the others' as their outcomes arrive from the ledger (``restore``,
    in any order: the windows stay sorted by time), and ``gate`` (the ledger is fresh) must
    hold for any call to go out. The overshoot is then the calls the workers have in flight
    together, plus those started before the last outcomes reached them (the ledger's lag).
    """

    CALL_WINDOW_S = 60.0
    COST_WINDOW_S = 3600.0

    def __init__(self, calls_per_minute: float, cost_per_hour: float,
                 clock: Clock = time.monotonic) -> None:
        self.calls_per_minute = calls_per_minute
        self.cost_per_hour = cost_per_hour
        self.clock = clock
        self._calls: deque[float] = deque()
        self._costs: deque[tuple[float, float]] = deque()
        self._cost_sum = 0.0
        self.gate: Callable[[], bool] | None = None  # must hold too (e.g. the ledger is fresh)

    def _expire(self) -> float:
        now = self.clock()
        while self._calls and now - self._calls[0] >= self.CALL_WINDOW_S:
            self._calls.popleft()
        while self._costs and now - self._costs[0][0] >= self.COST_WINDOW_S:
            self._cost_sum -= self._costs.popleft()[1]
        if not self._costs:
            self._cost_sum = 0.0  # no float drift once the window is empty
        return now

    def available(self) -> bool:
        self._expire()
        return (len(self._calls) < self.calls_per_minute and self._cost_sum < self.cost_per_hour
                and (self.gate is None or self.gate()))

    def try_acquire(self) -> bool:
        """Count one call if the budget allows it; False (nothing counted) if spent."""
        if not self.available():
            return False
        self._calls.append(self.clock())
        return True

    def restore(self, spent: Iterable[tuple[float, int, float]], wall_now: float) -> None:
        """Count what was spent before a restart: ``(wall-clock time, calls, cost)`` entries.

        >>> budget = Budget(calls_per_minute=10.0, cost_per_hour=1.0, clock=lambda: 1000.0)
        >>> budget.restore([(90.0, 4, 0.5), (50.0, 3, 0.25)], wall_now=100.0)
        >>> budget.calls_left, budget.cost_left
        (3.0, 0.25)

        Entries may come late and out of order (another worker's, from the ledger): each
        takes its place by time, so the oldest still leaves the window first.
        """
        now = self.clock()
        for at, calls, cost in sorted(spent):
            age = max(0.0, wall_now - at)
            stamp = now - age
            if age < self.CALL_WINDOW_S:
                for _ in range(calls):
                    insort(self._calls, stamp)
            if age < self.COST_WINDOW_S and cost > 0:
                insort(self._costs, (stamp, cost))
                self._cost_sum += cost

    def add_cost(self, cost: float) -> None:
        if cost > 0:
            self._costs.append((self._expire(), cost))
            self._cost_sum += cost

    @property
    def calls_left(self) -> float:
        self._expire()
        return max(0.0, self.calls_per_minute - len(self._calls))

    @property
    def cost_left(self) -> float:
        self._expire()
        return max(0.0, self.cost_per_hour - self._cost_sum)

    def seconds_until_available(self) -> float:
        """How long until ``available()`` may turn true again (0 if it is now)."""
        now = self._expire()
        waits = [0.0]
        if len(self._calls) >= self.calls_per_minute and self._calls:
            index = int(len(self._calls) - self.calls_per_minute)
            waits.append(self._calls[index] + self.CALL_WINDOW_S - now)
        if self._cost_sum >= self.cost_per_hour:
            excess, wait = self._cost_sum - self.cost_per_hour, 0.0
            for stamp, cost in self._costs:
                wait = stamp + self.COST_WINDOW_S - now
                excess -= cost
                if excess < 0:
                    break
            waits.append(wait)
        return max(waits)
