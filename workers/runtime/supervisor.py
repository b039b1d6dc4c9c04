"""``distillery up``: every worker of every task under one supervisor.

The supervisor starts the children (one classify worker for all tasks, a teacher and a
trainer worker per task) as ``python -m workers.cli worker ...`` processes, restarts a child
that exits unexpectedly (exponential backoff, reset after a minute of good health), forwards
SIGTERM/SIGINT to the children and waits for them to drain before it exits. Its pid and its
children's are in ``<state_dir>/up.json`` so that ``distillery down`` and ``distillery
status`` can find them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from distillery.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = 1.0
    history: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", *self.argv], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.proc.pid)


def up_file(settings: Settings) -> Path:
    return settings.state_dir / f"{settings.topic_prefix or 'default'}.up.json"


class Supervisor:
    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.settings = settings
        self.children = children
        self.stopping = False

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "children": {
                c.name: {"pid": c.proc.pid if c.proc else None, "restarts": c.restarts,
                         "log": str(c.log_file)}
                for c in self.children
            },
        }
        path = up_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(tmp, path)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def start(self) -> None:
        for child in self.children:
            child.start()
        self._write_state()

    def poll(self) -> None:
        """Restart children that exited (with backoff); call this every half second or so."""
        self._check_children()

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT, then stop the children and wait for them."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self.stopping:
                self.poll()
                time.sleep(0.5)
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _check_children(self) -> None:
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    child.start()
                    changed = True
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at > 60:
                    child.backoff = 1.0  # healthy for a minute: forget old trouble
                continue
            child.history.append(code)
            child.restarts += 1
            child.proc = None
            child.next_start = now + child.backoff
            log.warning("%s exited with %s; restarting in %.0fs", child.name, code, child.backoff)
            child.backoff = min(child.backoff * 2, 60.0)
        if changed:
            self._write_state()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time: killing it", child.name)
                child.proc.kill()
                child.proc.wait()
        up_file(self.settings).unlink(missing_ok=True)


def stop_running(settings: Settings, timeout_s: float = 60.0) -> bool:
    """Signal a running ``distillery up`` (from its state file) and wait for it to exit."""
    path = up_file(settings)
    if not path.is_file():
        return False
    pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    return False
