"""Suspect verdicts: a teacher's label that the verdicts nearest to it unanimously contradict.

Real LLM teachers are wrong on 5-20% of items, and their errors are scattered: an item of
whose ``K`` nearest labelled neighbours (cosine similarity of the sentence embeddings, leaving
the item itself out) at least ``AGREE`` lie within ``RADIUS`` and carry one *other* label is
more likely a teacher error than a real exception. Such a verdict is held out of the
refresh altogether — not trained on, not used to calibrate or gate — and counted in the
refresh's report
(``dataset.suspect``). Feedback (gold) is never suspect, nor a verdict with a critical label
(a rare label's neighbours are mostly of other labels: on hateval, holding those out cost
catch rate); a verdict's neighbours may be any labelled row (bootstrap, feedback, verdicts).

Used when the task runs the cascade (its embeddings are stored anyway). Measured on the dev
streams: README "The second tier".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workers.trainer.store import Example

K = 7
AGREE = 6
RADIUS = 0.5
BLOCK_CELLS = 1 << 24  # similarities computed at once (64 MB of float32), whatever the store's size


def suspect_ids(examples: Sequence[Example], vectors: np.ndarray,
                extra_vectors: np.ndarray | None = None,
                extra_labels: Sequence[str] = (), protected: Sequence[str] = ()) -> set[str]:
    """Ids of the verdicts (not feedback) among ``examples`` whose ``K`` nearest labelled
    rows — the other examples and the ``extra`` rows (the bootstrap) — include ``AGREE``
    within ``RADIUS`` that agree on a label other than the verdict's. A verdict with a
    ``protected`` label (the critical ones: rare, and their neighbours mostly not) is never
    suspect."""
    if len(examples) == 0:
        return set()
    x = _unit(vectors)
    labels = [e.label for e in examples]
    if extra_vectors is not None and len(extra_vectors):
        x_all = np.vstack([x, _unit(extra_vectors)])
        labels_all = labels + list(extra_labels)
    else:
        x_all, labels_all = x, labels
    if len(labels_all) <= K:
        return set()
    names = sorted(set(labels_all))
    index = {name: i for i, name in enumerate(names)}
    y_all = np.array([index[name] for name in labels_all], dtype=np.int64)
    out: set[str] = set()
    block = max(1, BLOCK_CELLS // len(labels_all))
    for start in range(0, len(examples), block):
        sims = x[start:start + block] @ x_all.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -2.0  # not its own neighbour
        near = np.argpartition(-sims, K - 1, axis=1)[:, :K]
        close = np.take_along_axis(sims, near, axis=1) >= RADIUS
        votes = np.zeros((len(near), len(names)), dtype=np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(near)), K), y_all[near].ravel()),
                  close.ravel().astype(np.int64))
        top = votes.argmax(axis=1)
        for j in np.flatnonzero(votes[np.arange(len(near)), top] >= AGREE):
            e = examples[start + int(j)]
            if (not e.gold and e.source == "verdict" and names[top[j]] != e.label
                    and e.label not in protected):
                out.add(e.id)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
