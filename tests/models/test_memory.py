"""The verdict memory (kNN over past verdicts inside the embed stage's head), on synthetic
unit vectors: no encoder, no broker."""

from __future__ import annotations

import numpy as np

from models.calibrate import calibrate_policy
from models.embed.head import check_head_parity, export_head, head_probs, train_head
from models.embed.memory import build_memory
from models.pipeline import unweighted_sample


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three labels whose items come in tight clusters a linear head cannot separate (the
    clusters of one label lie on opposite sides): the memory's neighbours can."""
    rng = np.random.default_rng(seed)
    centres = _unit(np.random.default_rng(0).normal(size=(30, 6)))
    which = rng.integers(0, 30, size=n)
    x = _unit(centres[which] + 0.05 * rng.normal(size=(n, 6)))
    return x, (which % 3).astype(np.int64)


def test_memory_is_exported_inside_the_head_and_matches_numpy() -> None:
    x, y = _clusters(400, 1)
    head = train_head(x, y, 3)
    memory = build_memory(x, y, [f"text {i}" for i in range(len(y))], 3)
    assert memory is not None and len(memory.labels) == 400
    memory = memory.with_radius(0.6)
    model = export_head(head, 1.5, memory)
    assert check_head_parity(model, head, 1.5, x[:200], tolerance=1e-4, memory=memory) < 1e-4
    probs = head_probs(head, x[:50], 1.5, memory)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # nothing within the radius: the head's own probabilities (the memory stays silent)
    far = memory.with_radius(1.5)
    assert np.allclose(head_probs(head, x[:50], 1.5, far), head_probs(head, x[:50], 1.5),
                       atol=1e-5)


def test_memory_keeps_one_row_per_text_the_last_label() -> None:
    x, y = _clusters(10, 2)
    texts = ["same"] * 5 + [f"t{i}" for i in range(5)]
    memory = build_memory(x, y, texts, 3)
    assert memory is not None and len(memory.labels) == 6
    assert memory.labels[0] == y[4]


def test_memory_lets_the_calibrated_policy_decide_more_where_neighbours_agree() -> None:
    x, y = _clusters(600, 3)
    hold_x, hold_y = _clusters(400, 4)
    head = train_head(x, y, 3)
    memory = build_memory(x, y, [str(i) for i in range(len(y))], 3)
    assert memory is not None

    def coverage(mem: object) -> float:
        from models.embed.head import scores

        cal = calibrate_policy(scores(head, hold_x, mem), hold_y, None, ["a", "b", "c"], [],  # type: ignore[arg-type]
                               accuracy_target=0.95, catch_target=0.95, z=1.0, min_support=20,
                               conservative_floor=0.05,
                               sample=unweighted_sample([str(v) for v in hold_y], []))
        return cal.metrics.coverage

    assert coverage(memory.with_radius(0.8)) > coverage(None) + 0.3
