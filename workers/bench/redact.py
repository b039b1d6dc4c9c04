"""``distillery bench redact``: what redaction costs where every input is decoded.

The same synthetic tickets (a share of them carrying an e-mail, a phone and a card number)
go through ``streams.decode.decode_event`` for the ``tickets`` task without redaction (the
baseline) and with every kind, in the same run; figures are medians over ``repeats``.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from distillery.tasks import TICKETS, TaskConfig
from schemas.records import Ticket
from schemas.serde import encode
from streams.decode import Item, RawEvent, decode_event
from workers.sim.synth import iter_items

_PII = " Reach me at jo.smith{i}@example.com or (415) 555-{i:04d}; card 4111 1111 1111 1111."


def _events(n: int, pii_share: float, seed: int) -> list[RawEvent]:
    rng = random.Random(seed)
    events = []
    for i, item in enumerate(iter_items("tickets", n, seed=seed)):
        if rng.random() < pii_share and isinstance(item, Ticket):
            item = item.model_copy(update={"body": item.body + _PII.format(i=i % 10_000)})
        events.append(RawEvent("tickets", 0, i, None, encode(item)))
    return events


def _rate(task: TaskConfig, events: list[RawEvent]) -> tuple[float, int]:
    started = time.perf_counter()
    found = 0
    for raw in events:
        item = decode_event(task, raw, 20_000)
        if isinstance(item, Item):
            found += sum(item.redactions.values())
    return len(events) / (time.perf_counter() - started), found


def run_redact_bench(n: int = 5000, pii_share: float = 0.2, repeats: int = 3,
                     seed: int = 0) -> dict[str, Any]:
    events = _events(n, pii_share, seed)
    redacting = TICKETS.model_copy(update={"redact": ["email", "phone", "card", "iban", "ip",
                                                      "url"]})
    _rate(redacting, events[:200])  # imports and caches warm
    plain, redacted, found = [], [], 0
    for _ in range(repeats):
        plain.append(_rate(TICKETS, events)[0])
        rate, found = _rate(redacting, events)
        redacted.append(rate)
    p, r = statistics.median(plain), statistics.median(redacted)
    return {"events": n, "pii_share": pii_share, "repeats": repeats,
            "decode_items_per_s": p, "decode_redact_items_per_s": r, "ratio": r / p,
            "redactions": found}
