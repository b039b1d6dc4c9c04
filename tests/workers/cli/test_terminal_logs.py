"""What a library logs reaches the terminal only when it is an error; a worker's log keeps
it all (issue 31: kafka-python's event-loop timing warnings cluttered the demo)."""

from __future__ import annotations

import logging

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


def test_a_worker_keeps_the_libraries_logs() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert logging.getLogger("kafka.net.selector").isEnabledFor(logging.WARNING)
