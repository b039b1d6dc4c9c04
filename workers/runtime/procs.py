"""Small process and port helpers shared by the broker, the supervisor, status and the benches."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie.

    A process we may not signal (``PermissionError``) exists: it is alive. A zombie — a
    child that exited and was not reaped yet — is dead.

    >>> alive(os.getpid()), alive(None), alive(0)
    (True, False, False)
    """
    if not pid or pid < 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def pid_in(pid_file: Path) -> int | None:
    """The pid a detached process wrote to ``pid_file``, if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def stop_pid_file(pid_file: Path, timeout_s: float = 30.0) -> int | None:
    """SIGTERM the process of ``pid_file``, SIGKILL it after ``timeout_s``, remove the file.
    Returns the pid if a process was stopped (``None``: none ran)."""
    pid = pid_in(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return pid


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1 (a bind there succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it; another may take it later).

    Never one this process handed out before: two children started a moment apart would
    otherwise be given the same port before either had bound it."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise OSError("no free TCP port that was not handed out already")
