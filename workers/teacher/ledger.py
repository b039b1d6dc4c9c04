"""The teacher's ledger: one verdict memory and one budget for every teacher worker of a task.

Teacher workers scale like any stage: add consumers to the group of ``<task>.teacher``, on
one host or several. What they must share lives in Kafka, in the ledger topic
``<task>.teacher.ledger`` (``cleanup.policy=compact,delete``, the teacher topic's partition
count and retention), never in one process:

- **Writing.** Every outcome a worker stores is produced to the ledger (key: its memo key,
  value: JSON with the outcome, its calls and cost and ``stored_at``) to the partition of
  the request it answers, and the worker waits for the broker's acknowledgement *before*
  it sends the outputs; the request's offset is committed only after those are
  acknowledged. A request whose offset was not committed is therefore redelivered with its
  outcome already in the ledger.
- **Reading.** Every worker reads the whole ledger (all partitions, no consumer group) into
  its local cache (``OutcomeStore``, with the offset read so far: a restart reads only what
  is new; a host with an empty state folder reads it all). It has caught up with the
  ledger's end, as of the moment, before it consumes its first request and again each time
  it is assigned partitions; so a request redelivered to another worker after a rebalance,
  a crash or a restart on another host replays its outcome instead of paying again.
- **Budget.** Each worker's ``Budget`` has the task's whole limits. It counts its own calls
  when they are made and everyone else's outcomes as they arrive from the ledger (each
  payment once: by ledger key and ``stored_at``), so every worker sees the group's spend
  and all stop when it reaches the limit — no skew between partitions wastes any budget.
  A worker whose view of the ledger is older than ``max_lag_s`` makes no call (the budget's
  ``gate``): a worker that cannot read the ledger cannot spend blind.

What is not exact, and the bound on it: the workers decide independently, so the spend can
exceed the limit by the calls in flight when it is reached (a worker does not know what
another's calls in flight will cost) and by the calls started before the last outcomes
reached the starter through the ledger (its lag: milliseconds when the broker is healthy,
``max_lag_s`` at worst). With S = workers × ``TEACHER_CONCURRENCY`` call slots and a lag
shorter than a call, that is at most 2·S calls (one in flight and one started per slot);
in the test, two workers of concurrency 2 whose calls finish together overshoot by 4
(S), not 2× the limit as two private budgets would. A request answered by its old owner
*after* the rebalance that
moved its partition (a call in flight across a rebalance) may be answered by the new owner
too: both payments are counted, and the first outcome is not replayed. The memory lasts as
long as the teacher topic keeps its requests (the ledger shares its retention); a request
re-sent after that is asked again.

Why not shard the budget by partition (a worker with k of P partitions spends k/P)? It is
strict only if each partition has its own window of 1/P: pooled across a worker's
partitions, a worker can spend its share on one partition, lose that partition (its spend
goes with it) and spend again on the others it keeps. Per-partition windows waste what
idle partitions do not use and cannot express a budget smaller than one call per partition
per window; reading the ledger costs one small record per teacher call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from distillery.errors import BrokerError, SerializationError
from distillery.settings import Settings
from distillery.tasks import TaskConfig
from streams.topics import teacher_ledger_topic
from workers.teacher.policy import Budget
from workers.teacher.store import Entry, Outcome, OutcomeStore

log = logging.getLogger(__name__)

LEDGER_VERSION = 1
SPEND_WINDOW_S = Budget.COST_WINDOW_S


def encode_entry(entry: Entry) -> bytes:
    """The ledger value of an entry (JSON: this topic is distillery's own state).

    >>> raw = encode_entry(Entry("a1#00", Outcome("answer", "billing", cost=0.5, calls=1), 7.0))
    >>> decode_entry(b"a1#00", raw) == Entry("a1#00", Outcome("answer", "billing", cost=0.5,
    ...                                                        calls=1), 7.0)
    True
    """
    return json.dumps({"v": LEDGER_VERSION, "stored_at": entry.stored_at, "memo": entry.memo,
                       "outcome": asdict(entry.outcome)}, separators=(",", ":")).encode("utf-8")


def decode_entry(key: bytes | None, value: bytes | None) -> Entry:
    """A ledger record back to its entry; a ``SerializationError`` if it is not one."""
    try:
        data = json.loads(value or b"")
        return Entry((key or b"").decode("utf-8"), Outcome(**data["outcome"]),
                     float(data["stored_at"]), bool(data.get("memo", True)))
    except (ValueError, TypeError, KeyError) as exc:
        raise SerializationError(f"not a teacher ledger record: {exc}") from exc


class SpendCounter:
    """Feeds a budget every payment once, whether it comes from here, the cache or the ledger.

    A payment is known by its entry's identity (ledger key, ``stored_at``); identities older
    than the budget's longest window are forgotten.
    """

    def __init__(self, budget: Budget, wall: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.wall = wall
        self._seen: dict[tuple[str, float], float] = {}
        self._prune_at = 1024

    def own(self, entry: Entry) -> None:
        """A payment this worker made: its calls and cost are in the budget already."""
        self._mark(entry)

    def restore(self, entries: Iterable[Entry]) -> int:
        """Count the payments not counted yet; returns how many were new."""
        now, new = self.wall(), []
        for entry in entries:
            if entry.identity in self._seen or now - entry.stored_at >= SPEND_WINDOW_S:
                continue
            self._mark(entry)
            new.append((entry.stored_at, entry.outcome.calls, entry.outcome.cost))
        if new:
            self.budget.restore(new, now)
        return len(new)

    def _mark(self, entry: Entry) -> None:
        self._seen[entry.identity] = entry.stored_at
        if len(self._seen) >= self._prune_at:
            horizon = self.wall() - SPEND_WINDOW_S
            self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
            self._prune_at = max(1024, 2 * len(self._seen))


class LedgerReader:
    """Reads every partition of the ledger into the cache and the budget, in the background."""

    def __init__(self, settings: Settings, task: TaskConfig, store: OutcomeStore,
                 spend: SpendCounter, *, max_lag_s: float = 5.0, refresh_s: float = 0.5,
                 restore_timeout_s: float = 300.0) -> None:
        self.settings = settings
        self.topic = settings.topic(teacher_ledger_topic(task))
        self.store = store
        self.spend = spend
        self.max_lag_s = max_lag_s
        self.refresh_s = refresh_s
        self.restore_timeout_s = restore_timeout_s
        self.applied = 0
        self._fresh_at = float("-inf")
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._tasks: list[asyncio.Task[None]] = []

    def fresh(self) -> bool:
        """Has this worker seen the whole ledger as it was at most ``max_lag_s`` ago?"""
        return time.monotonic() - self._fresh_at <= self.max_lag_s

    def failure(self) -> BaseException | None:
        """The error that ended the background reader, if it ended."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def start(self, partitions: int) -> None:
        """Seek every partition to the cache's checkpoint and read up to the ledger's end."""
        self._consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=f"distillery-teacher-ledger-{self.topic}",
            **self.settings.aiokafka_kwargs())
        await self._consumer.start()
        self._tps = [TopicPartition(self.topic, p) for p in range(partitions)]
        self._consumer.assign(self._tps)
        checkpoint = self.store.checkpoint(self.topic)
        ends = await self._consumer.end_offsets(self._tps)
        if any(checkpoint.get(tp.partition, 0) > ends[tp] for tp in self._tps):
            # the topic was deleted and created again: the cache's offsets mean nothing
            log.warning("ledger %s is behind the cache's checkpoint (topic re-created?); "
                        "reading it from the start", self.topic)
            self.store.forget_checkpoint(self.topic)
            checkpoint = {}
        for tp in self._tps:
            if tp.partition in checkpoint:
                self._consumer.seek(tp, checkpoint[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._freshen())]
        started = time.monotonic()
        await self.caught_up()
        self._fresh_at = max(self._fresh_at, started)
        log.info("teacher ledger %s: %d records read in %.2fs (%d partitions)", self.topic,
                 self.applied, time.monotonic() - started, partitions)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def caught_up(self, timeout_s: float | None = None) -> None:
        """Return once every record in the ledger now has been read into the cache.

        Raises ``BrokerError`` (retriable: the worker stops and its supervisor restarts it)
        after ``timeout_s`` (``restore_timeout_s``), or at once if the reader has failed.
        """
        assert self._consumer is not None
        consumer = self._consumer
        timeout_s = self.restore_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        ends = await asyncio.wait_for(consumer.end_offsets(self._tps), timeout_s)
        while True:
            failure = self.failure()
            if failure is not None:
                raise BrokerError(f"the teacher ledger reader failed: {failure}")
            behind = [tp for tp in self._tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"teacher ledger {self.topic}: not read to its end after "
                                  f"{timeout_s:.0f}s ({len(behind)} partitions behind)")
            await asyncio.sleep(0.02)

    async def _read(self) -> None:
        """Apply each fetched batch to the cache and the budget, without awaiting in between
        (so a position seen by ``caught_up`` is always one already applied)."""
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as exc:
                if not getattr(exc, "retriable", False):
                    raise
                log.warning("teacher ledger %s: %s; retrying", self.topic, exc)
                await asyncio.sleep(0.5)
                continue
            if batch:
                self._apply(batch)

    def _apply(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        entries: list[Entry] = []
        checkpoint: dict[tuple[str, int], int] = {}
        for tp, messages in batch.items():
            for message in messages:
                try:
                    entries.append(decode_entry(message.key, message.value))
                except SerializationError as exc:
                    log.warning("teacher ledger %s[%s]@%s skipped: %s", tp.topic, tp.partition,
                                message.offset, exc)
            if messages:
                checkpoint[(tp.topic, tp.partition)] = messages[-1].offset + 1
        self.store.write(entries, checkpoint)
        self.spend.restore(entries)
        self.applied += len(entries)

    async def _freshen(self) -> None:
        """Every ``refresh_s``: note when the whole ledger as it was then had been read."""
        while True:
            asked = time.monotonic()
            try:
                await self.caught_up(timeout_s=max(self.max_lag_s, 1.0) * 2)
                self._fresh_at = asked
            except (BrokerError, KafkaError, TimeoutError) as exc:
                log.warning("teacher ledger %s is stale (%s): no teacher calls until it is "
                            "read again", self.topic, exc)
            await asyncio.sleep(self.refresh_s)
