"""One trainer per task: leader election on Kafka itself, so it holds across hosts.

Every trainer of a task joins the consumer group ``<prefix>distillery-trainer-lock-<task>``
on the one-partition topic ``<task>.trainer.lock`` (nothing is ever written to it). The group
coordinator gives that partition to exactly one member of each generation: that member
*leads* (refreshes, promotes, announces); the others *stand by*. The group's assignor
(``keep_holder_assignor``) leaves the partition with its holder when a standby joins, so a
trainer started later does not take the lead from one in the middle of a refresh. When the
leader leaves, a standby is given the partition: at once on a clean stop (the consumer leaves
the group), after the session timeout (``SESSION_TIMEOUT_MS``) when it crashed, hangs or
loses the network.

Fencing. A member learns that it lost the partition only when its own coordinator hears so
(a failed heartbeat, then a rejoin); a leader paused longer than the session timeout (a long
GC, a swapped-out process, a stalled disk) wakes up still believing it leads while a standby
already does. So a leader does not trust its flag before announcing a version:
``confirm()`` asks the broker, by committing the lock partition's offset with its member id
and generation; the coordinator accepts that only from a member of the current generation,
in which the partition is this member's. What remains possible is the window between that
answer and the announcement reaching the broker: a pause there of more than a session
timeout lets the new leader start, and a late announcement from the old one can then land
after the new leader's first one. The new leader announces only after a refresh of its own
(seconds to minutes of training), so this needs a pause inside a window of milliseconds that
outlasts a session timeout plus that refresh. Kafka fences a producer by its consumer group's
generation only inside a transaction (KIP-447), which the announcement does not use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from distillery.errors import DistilleryError
from distillery.settings import Settings
from streams.topics import trainer_lock_topic

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 10_000  # a crashed leader is replaced after this long
HEARTBEAT_INTERVAL_MS = 3_000
CONFIRM_TIMEOUT_S = 15.0


class LeadershipLost(DistilleryError):
    """This trainer no longer holds its task's lock: what it trained is not announced.
    Retriable: it announces again if it leads again."""

    retriable = True


def lock_group(settings: Settings, task: str) -> str:
    return f"{settings.topic_prefix}distillery-trainer-lock-{task}"


def keep_holder_assignor(lock: TrainerLock) -> type[Any]:
    """An assignor (a class, as aiokafka wants; one per lock, so its state is this member's)
    that gives the lock partition to the member that holds it, else to one member.

    A member that holds the partition says so in its join metadata with the *term* it got
    it in (the assigning member's clock, in ns, when the holder changed). Two claims happen
    when a leader that was expelled (a pause) rejoins before it noticed: the newer term
    wins. (aiokafka's sticky assignor keeps its state on the class, so two members in one
    process would both claim the partition; and it would spread a 1-partition topic alike.)
    """
    from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
    from aiokafka.coordinator.protocol import (
        ConsumerProtocolMemberAssignment,
        ConsumerProtocolMemberMetadata,
    )

    class KeepHolder(AbstractPartitionAssignor):
        name = "distillery-keep-holder"
        version = 0

        @classmethod
        def metadata(cls, topics: Any) -> Any:
            claim = str(lock._term).encode() if lock._term is not None else b""
            return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), claim)

        @classmethod
        def assign(cls, cluster: Any, members: Any) -> dict[str, Any]:
            claims = {m: int(md.user_data) for m, md in members.items() if md.user_data}
            if claims:
                holder = max(claims, key=lambda m: (claims[m], m))
                term = claims[holder]
            else:
                holder, term = min(members), time.time_ns()
            return {m: ConsumerProtocolMemberAssignment(
                cls.version, [(lock.topic, [0])] if m == holder else [],
                str(term).encode() if m == holder else b"") for m in members}

        @classmethod
        def on_assignment(cls, assignment: Any) -> None:
            held = any(p == 0 for topic, ps in assignment.assignment if topic == lock.topic
                       for p in ps)
            lock._term = int(assignment.user_data) if held and assignment.user_data else None

    return KeepHolder


class TrainerLock:
    """Membership of the task's lock group; ``leading`` while this member holds partition 0.

    ``on_change(leading)`` is called (on the event loop) when the outcome of a rebalance
    differs from the last one reported; a revoke-and-give-back (a standby joining) is not a
    change. Start and stop it on the event loop; ``confirm_sync`` may be called from a
    worker thread (the refresh's)."""

    def __init__(self, settings: Settings, task: str,
                 on_change: Callable[[bool], None] | None = None, *,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS) -> None:
        self.settings = settings
        self.task = task
        self.topic = settings.topic(trainer_lock_topic(task))
        self.group = lock_group(settings, task)
        self.on_change = on_change
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._leading = False
        self._term: int | None = None  # while this member holds the partition (see above)
        self._reported: bool | None = None
        self._consumer: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self._leading

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        lock = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                lock._leading = False

            async def on_partitions_assigned(self, assigned: Any) -> None:
                lock._assigned({(tp.topic, tp.partition) for tp in assigned})

        self._loop = asyncio.get_running_loop()
        self._consumer = AIOKafkaConsumer(
            group_id=self.group, client_id=f"distillery-trainer-lock-{self.holder}",
            enable_auto_commit=False, auto_offset_reset="latest",
            partition_assignment_strategy=(keep_holder_assignor(self),),
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            rebalance_timeout_ms=self.session_timeout_ms,
            **self.settings.aiokafka_kwargs(),
        )
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=Listener())
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        # Polling drives the group protocol (and keeps max.poll.interval from expiring);
        # the topic holds no records, so this only waits.
        while True:
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker away: not leading meanwhile
                log.warning("task %s: trainer lock: %s", self.task, exc)
                await asyncio.sleep(1.0)

    def _assigned(self, partitions: set[tuple[str, int]]) -> None:
        self._leading = (self.topic, 0) in partitions
        if self._leading != self._reported:
            self._reported = self._leading
            if self.on_change is not None:
                self.on_change(self._leading)
        self._changed.set()

    async def stop(self) -> None:
        """Leave the group (a standby is given the lock at once)."""
        self._leading = False
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def wait_leading(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for this member to lead; True if it does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._leading:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass
        return True

    async def confirm(self, timeout_s: float = CONFIRM_TIMEOUT_S) -> bool:
        """Ask the broker whether this member still holds the lock (see the module's
        docstring). A rebalance in progress is waited out, up to ``timeout_s``."""
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

        if self._consumer is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        tp = TopicPartition(self.topic, 0)
        while True:
            if self._leading:
                try:
                    await asyncio.wait_for(
                        self._consumer.commit({tp: (0, self.holder)}),
                        max(0.1, deadline - loop.time()))
                    return True
                except (CommitFailedError, IllegalStateError) as exc:
                    # The group moved on without this member: it no longer leads, whatever
                    # its listener has heard so far.
                    log.warning("task %s: the broker refused this trainer's lock (%s)",
                                self.task, type(exc).__name__)
                    self._leading = False
                    self._term = None  # and claims it no more when it rejoins
                except (KafkaError, TimeoutError) as exc:
                    log.warning("task %s: could not confirm the trainer lock: %s", self.task,
                                exc)
            left = deadline - loop.time()
            if left <= 0:
                return False
            await self.wait_leading(min(left, 1.0))

    def confirm_sync(self, timeout_s: float = CONFIRM_TIMEOUT_S) -> bool:
        """``confirm`` from another thread than the lock's event loop (the refresh thread)."""
        if self._loop is None or self._consumer is None:
            return False
        future = asyncio.run_coroutine_threadsafe(self.confirm(timeout_s), self._loop)
        try:
            return future.result(timeout_s + 5.0)
        except Exception as exc:  # noqa: BLE001 - no answer is not a yes
            log.warning("task %s: trainer lock not confirmed: %s", self.task, exc)
            return False


async def latest_announcements(settings: Settings) -> dict[str, Any]:
    """The newest announcement per key (task, or ``<task>/embed``) on the ``models`` topic."""
    from schemas.records import ModelAnnouncement
    from schemas.serde import decode
    from streams.topics import MODELS_TOPIC
    from workers.trainer.consume import read_range

    latest: dict[str, Any] = {}
    for message in await read_range(settings, [settings.topic(MODELS_TOPIC)]):
        if message.key and message.value:
            try:
                latest[message.key.decode("utf-8", "replace")] = decode(message.value,
                                                                         ModelAnnouncement)
            except DistilleryError:
                continue
    return latest
