"""Suspect verdicts: a teacher label its nearest labelled neighbours contradict is held out."""

from __future__ import annotations

import numpy as np

from workers.trainer.store import Example
from workers.trainer.suspects import suspect_ids


def _examples(labels: list[str], gold: set[int] = frozenset()) -> list[Example]:  # type: ignore[assignment]
    return [Example(f"e{i}", f"text {i}", y, "feedback" if i in gold else "verdict",
                    "low_confidence", i in gold, i) for i, y in enumerate(labels)]


def _clusters(n_per: int, k: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 32))
    x = np.vstack([c + 0.1 * rng.normal(size=(n_per, 32)) for c in centres])
    return x, [f"label{j}" for j in range(k) for _ in range(n_per)]


def test_a_flipped_label_inside_a_clean_cluster_is_suspect_and_nothing_else() -> None:
    x, labels = _clusters(20, 3)
    assert suspect_ids(_examples(labels), x) == set()  # clean: nothing held out
    noisy = list(labels)
    noisy[3], noisy[25], noisy[47] = "label1", "label2", "label0"
    assert suspect_ids(_examples(noisy), x) == {"e3", "e25", "e47"}


def test_feedback_and_critical_labels_are_never_suspect() -> None:
    x, labels = _clusters(20, 3)
    noisy = list(labels)
    noisy[3], noisy[25] = "label1", "fraud"
    found = suspect_ids(_examples(noisy, gold={3}), x, protected=["fraud"])
    assert found == set()


def test_the_bootstrap_rows_vote_too() -> None:
    x, labels = _clusters(4, 2)  # too few rows of its own to outvote anything
    noisy = list(labels)
    noisy[0] = "label1"
    assert suspect_ids(_examples(noisy), x) == set()
    boot_x, boot_y = _clusters(10, 2)
    assert suspect_ids(_examples(noisy), x, boot_x, boot_y) == {"e0"}
