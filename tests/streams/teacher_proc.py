"""Run a real teacher worker process next to the classify worker (``tests/streams/kit.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from distillery.settings import Settings
from tests.streams.kit import REPO, worker_env


def start_teacher(settings: Settings, log_file: Path, task: str = "tickets",
                  **extra: str) -> subprocess.Popen[bytes]:
    """``distillery worker teacher --task T`` as a child; the ``oracle`` teacher by default."""
    env = worker_env(settings, DISTILLERY_METRICS_PORT="0", **extra)
    env.setdefault("DISTILLERY_TEACHER_KIND", "oracle")
    out = open(log_file, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "teacher", "--task", task],
        env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
