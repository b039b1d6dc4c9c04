"""What a library logs reaches the terminal only when it is an error; a worker's log keeps
it all (kafka-python's event-loop timing warnings cluttered the demo)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from workers.cli.main import QUIET_LIBRARIES, main


@pytest.fixture(autouse=True)
def _restore_levels() -> object:
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_command_at_the_terminal_shows_only_library_errors() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    selector = logging.getLogger("kafka.net.selector")
    assert not selector.isEnabledFor(logging.WARNING)
    assert selector.isEnabledFor(logging.ERROR)


def test_a_command_that_reads_the_settings_keeps_them_quiet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cli_settings`` quiets client loggers too: it must not undo the terminal's ERROR (the
    demo's terminal showed the selector's warnings)."""
    monkeypatch.setenv("DISTILLERY_STATE_DIR", str(tmp_path))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    with pytest.raises(SystemExit):
        main(["models", "list"])
    assert not logging.getLogger("kafka.net.selector").isEnabledFor(logging.WARNING)


def test_a_worker_keeps_the_libraries_logs() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert logging.getLogger("kafka.net.selector").isEnabledFor(logging.WARNING)
