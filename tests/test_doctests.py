"""The runnable examples in docstrings hold (the contracts that read best as examples)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "models.data",
    "models.policy",
    "models.system",
    "streams.routing",
    "workers.runtime.procs",
    "workers.teacher.policy",
    "workers.trainer.embeddings",
    "workers.trainer.refresh",
    "workers.trainer.schedule",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0, f"{name} has no docstring example"
    assert failures == 0
