"""The supervisor restarts a crashed child with backoff and stops the rest cleanly."""

from __future__ import annotations

import json
import time
from pathlib import Path

from distillery.settings import child_env, load_settings
from workers.supervisor import Child, Supervisor, up_file


def test_a_crashing_child_is_restarted_with_backoff_and_a_healthy_one_stopped(
    tmp_path: Path,
) -> None:
    settings = load_settings(state_dir=tmp_path / "state", topic_prefix="sup.")
    env = child_env(settings)
    # `broker status` on a broker that does not run exits 1 at once: a crashing child.
    crasher = Child("crasher", ["broker", "status"], env, tmp_path / "crasher.log")
    # `consume` on an unreachable cluster keeps trying to connect: a child that stays up.
    sleeper = Child("sleeper", ["consume", "sup.x", "--timeout", "60"],
                    {**env, "DISTILLERY_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, tmp_path / "sleeper.log")
    supervisor = Supervisor(settings, [crasher, sleeper])
    supervisor.start()
    state = json.loads(up_file(settings).read_text(encoding="utf-8"))
    assert set(state["children"]) == {"crasher", "sleeper"}
    starts: list[float] = []
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and crasher.restarts < 3:
        supervisor.poll()
        if crasher.proc is not None and (not starts or crasher.started_at != starts[-1]):
            starts.append(crasher.started_at)
        time.sleep(0.1)
    assert crasher.restarts >= 3 and set(crasher.history) == {1}
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[-1] > gaps[0], f"backoff grows: {gaps}"
    assert sleeper.proc is not None and sleeper.proc.poll() is None and sleeper.restarts == 0
    supervisor.shutdown(timeout_s=20)
    assert sleeper.proc.poll() is not None
    assert not up_file(settings).exists()
