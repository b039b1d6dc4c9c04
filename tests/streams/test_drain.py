"""``run_inline``: a delivery that does not wait runs in place; one that waits is finished
later with its result, its exception or its cancellation intact."""

from __future__ import annotations

import asyncio

import pytest

from streams.drain import DrainApp, DrainConsumer, run_inline


async def _no_wait(log: list[str]) -> str:
    log.append("ran")
    return "done"


async def _waits(gate: asyncio.Event, log: list[str]) -> str:
    log.append("started")
    await gate.wait()
    log.append("resumed")
    return "late"


def test_a_coroutine_that_never_waits_finishes_in_place_without_a_task() -> None:
    async def main() -> None:
        log: list[str] = []
        tasks_before = len(asyncio.all_tasks())
        assert run_inline(_no_wait(log)) is None
        assert log == ["ran"]
        assert len(asyncio.all_tasks()) == tasks_before

    asyncio.run(main())


def test_a_coroutine_that_waits_is_finished_by_the_rest() -> None:
    async def main() -> None:
        log: list[str] = []
        gate = asyncio.Event()
        rest = run_inline(_waits(gate, log))
        assert rest is not None and log == ["started"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        gate.set()
        assert await task == "late"
        assert log == ["started", "resumed"]

    asyncio.run(main())


def test_errors_come_out_where_they_happen() -> None:
    async def fails_at_once() -> None:
        raise ValueError("bad at once")

    async def fails_later(gate: asyncio.Event) -> None:
        await gate.wait()
        raise KeyError("bad later")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad at once"):
            run_inline(fails_at_once())
        gate = asyncio.Event()
        rest = run_inline(fails_later(gate))
        assert rest is not None
        gate.set()
        with pytest.raises(KeyError, match="bad later"):
            await rest

    asyncio.run(main())


def test_cancelling_the_rest_cancels_the_delivery() -> None:
    async def main() -> None:
        cleaned: list[str] = []

        async def blocked(gate: asyncio.Event) -> None:
            try:
                await gate.wait()
            finally:
                cleaned.append("finally")

        rest = run_inline(blocked(asyncio.Event()))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["finally"]

    asyncio.run(main())


def test_the_classify_app_uses_the_drain_consumer() -> None:
    app = DrainApp("drain-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    assert app.transport.Consumer is DrainConsumer
