"""Few-shot examples for the ``openai`` teacher, from a CSV or JSONL file (text, label)."""

from __future__ import annotations

from pathlib import Path

from distillery.errors import ConfigError
from distillery.tasks import TaskConfig
from workers.teacher.openai_client import Example
from workers.teacher.recorded import read_rows


def load_examples(path: Path, task: TaskConfig) -> list[Example]:
    """Every row's ``text`` and ``label``; a label outside the task's set is an error."""
    examples = []
    for number, row in enumerate(read_rows(path), start=1):
        text, label = str(row.get("text") or ""), str(row.get("label") or "")
        if not text.strip() or label not in task.label_names:
            raise ConfigError(f"{path}: example {number} needs a text and one of task "
                              f"{task.name}'s labels (got {label!r})")
        examples.append(Example(text, label))
    return examples
