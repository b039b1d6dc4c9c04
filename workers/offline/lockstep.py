"""``backtest --via-kafka`` in lockstep: the stream waits for the loop, as in-process.

In-process, a batch is routed by the versions serving when it arrives, and a refresh that a
batch's verdicts make due is done before the next batch: the figures do not depend on how
fast the machine trains. Through Kafka the workers run on their own; to reproduce the
in-process run, the history is produced a batch at a time and, after each, ``Barrier.wait``
returns only when

1. every stage has consumed and committed everything before it, in pipeline order: the
   classify worker's group on the input topic, the refine worker's on ``<task>.refine``,
   the teacher worker's on ``<task>.teacher``, the trainer's on ``<task>.verdicts`` (each
   commits only after its outputs were acknowledged, so an empty lag upstream means the
   outputs are in the next topic). The trainer is held (SIGSTOP) while the batch flows and
   let go once the teacher has caught up, so that it reads the batch's verdicts together
   and a refresh falls between batches, as in-process;
2. the trainer has no refresh due or running (its store's ``new_verdicts`` is under the
   next ``refresh_step``; the time trigger is off in the backtest);
3. the classify and refine workers serve the registry's serving versions (their
   ``/metrics`` version gauges).

Lag is counted over every partition of the topic (a partition the group never committed
counts from its start), not only the committed ones.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distillery.settings import Settings
from distillery.tasks import TaskConfig
from models.registry import Registry
from models.stage import registry_key, stage_version
from workers.trainer.schedule import due_by_verdicts
from workers.trainer.worker import store_path

VERSION_INFO = re.compile(r'^(distillery(?:_refine)?_model_version_info)\{[^}]*version="([^"]+)"'
                          r'[^}]*\}\s+1(?:\.0)?$', re.M)


@dataclass(frozen=True)
class Hop:
    group: str
    topic: str


def _released(release: Callable[[], None]) -> bool:
    release()
    return True


class Barrier:
    def __init__(self, settings: Settings, task: TaskConfig, hops: list[Hop],
                 classify_port: int, refine_port: int | None,
                 poll: Callable[[], None] = lambda: None, timeout_s: float = 600.0) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.s = settings
        self.task = task
        self.hops = hops
        self.ports = {"classify": classify_port, "refine": refine_port}
        self.poll = poll
        self.timeout_s = timeout_s
        self.admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=10_000)
        self.consumer = KafkaConsumer(**settings.kafka_python_kwargs())
        self.waited_s = 0.0

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()

    def wait(self, release: Callable[[], None] = lambda: None) -> None:
        """Until the loop has settled; ``release`` is called once every hop before the
        trainer's (the last) has caught up."""
        started = time.monotonic()
        deadline = started + self.timeout_s
        checks: list[Callable[[], bool]] = [
            *(lambda h=h: self._lag(h) == 0 for h in self.hops[:-1]),
            lambda: _released(release),
            lambda: self._lag(self.hops[-1]) == 0, self._trainer_idle, self._served]
        for check in checks:
            while not check():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the loop did not settle within {self.timeout_s:.0f} s "
                                       f"({getattr(check, '__name__', 'a stage')})")
                self.poll()
                time.sleep(0.2)
        self.waited_s += time.monotonic() - started

    def _lag(self, hop: Hop) -> int:
        from kafka import TopicPartition

        topic = self.s.topic(hop.topic)
        committed: dict[Any, Any] = self.admin.list_group_offsets(hop.group).get(
            hop.group) or {}
        parts = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = self.consumer.end_offsets(tps)
        begins = self.consumer.beginning_offsets(tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            offset = getattr(meta, "offset", meta)
            at = begins[tp] if offset is None or int(offset) < 0 else int(offset)
            lag += max(0, ends[tp] - at)
        return lag

    def _trainer_idle(self) -> bool:
        path = store_path(self.s, self.task)
        if not path.exists():
            return False
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'new_verdicts'").fetchone()
            seen = int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
        except sqlite3.Error:
            return False
        finally:
            db.close()
        new = int(row[0]) if row else 0
        return not due_by_verdicts(new, seen, self.s.refresh_first_verdicts,
                                   self.s.refresh_every_verdicts)

    def _served(self) -> bool:
        registry = Registry(self.s.registry_root)
        want = {"classify": registry.serving(self.task.name),
                "refine": registry.serving(registry_key(self.task.name, "embed"))
                if self.ports["refine"] else None}
        for role, manifest in want.items():
            if manifest is None:
                continue
            name = manifest.version if role == "classify" else stage_version(
                "embed", manifest.version)
            if name not in self._serving(self.ports[role]):
                return False
        return True

    @staticmethod
    def _serving(port: int | None) -> set[str]:
        import httpx

        if not port:
            return set()
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        except httpx.HTTPError:
            return set()
        return {m.group(2) for m in VERSION_INFO.finditer(text)}
