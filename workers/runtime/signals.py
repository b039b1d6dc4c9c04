"""Running an asyncio worker until SIGTERM/SIGINT asks it to stop (then it drains)."""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol


class StoppableWorker(Protocol):
    def stop(self) -> None: ...

    async def run(self) -> None: ...


def run_until_signal(worker: StoppableWorker) -> None:
    """Run ``worker.run()``; SIGTERM or SIGINT call ``worker.stop()`` so it drains and exits."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
