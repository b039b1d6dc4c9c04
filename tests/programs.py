"""Tests that need a program which is not a Python package (Debian's chromium, prometheus):
skipped where it is missing, failed instead where the run asked for it (``.ci/run`` installs
them and sets the switch), so that CI never counts a skipped test as passing."""

from __future__ import annotations

import os
import shutil

import pytest


def require_programs(*programs: str, switch: str, install: str) -> None:
    """Skip the test unless every program is found (a name on PATH or a path); fail instead
    when the environment variable ``switch`` is ``required``."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} needed ({install})"
    if os.environ.get(switch) == "required":
        pytest.fail(why)
    pytest.skip(why)
