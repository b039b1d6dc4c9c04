"""Waiting until consumer groups are ``Stable``: their workers joined and hold partitions.

What a benchmark, a backtest through Kafka or a test produces next is then read as it comes,
not as a backlog whose size depends on how fast the machine started the workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from distillery.settings import Settings


def wait_until_stable(settings: Settings, groups: Mapping[str, int | None],
                      timeout_s: float = 180.0,
                      between: Callable[[list[str]], None] = lambda waiting: None,
                      poll_s: float = 0.3) -> None:
    """Return once every group is Stable (with exactly ``n`` members where ``n`` is given).

    ``between(waiting)`` runs between checks with the groups still waiting: raise from it to
    give up early (a worker exited), or report progress. A group nobody joined yet has no
    coordinator: that is waiting, not an error. Raises ``TimeoutError`` after ``timeout_s``.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # kafka-python cannot decode faust's assignor metadata and warns at length: not needed
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=10000)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            waiting = []
            for group, members in groups.items():
                try:
                    found = admin.describe_groups([group]).get(group) or {}
                except KafkaError as exc:
                    if not exc.retriable:
                        raise
                    found = {}
                state = str(found.get("group_state", found.get("state", ""))).lower()
                joined = len(found.get("members") or [])
                if state != "stable" or (members is not None and joined != members):
                    waiting.append(group)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not Stable within {timeout_s:.0f} s: {', '.join(waiting)}")
            between(waiting)
            time.sleep(poll_s)
    finally:
        admin.close()
