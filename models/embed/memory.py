"""The verdict memory: a k-nearest-neighbour vote over past verdicts' embeddings (OCaTS's idea).

Tier 2 scores an item with its linear head *and* with the labels of the ``k`` past verdicts
nearest to it (cosine similarity of the unit-length sentence embeddings). Only neighbours at
similarity ``radius`` or more vote; the slots of those that do not are filled by the head's
own distribution, and the vote is mixed half and half with the head:

    q = (counts of the close neighbours' labels + (k - close) · p_head) / k
    p = (1 - weight) · p_head + weight · q,   then   softmax(log p / T)

So an item close to several past verdicts that agree gets a confident score (the agreement
of several verdicts also outvotes one wrong verdict: a noisy teacher's errors are scattered),
and an item far from every verdict keeps the head's score. The radius is calibrated like any
other stage's threshold (``models.embed.fit``: the one whose calibrated policy decides the
most at the target), and no memory at all is one of the choices.

The memory travels inside the head's ONNX graph (``memory_nodes``): a version is still one
file with one sha256, and the refine worker serves it unchanged. Rows are the training
verdicts (the held-out ones are not in it, so calibration sees what serving will),
de-duplicated by text, the newest ``MAX_ROWS`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

K = 5
WEIGHT = 0.5
RADII = (0.55, 0.65, 0.75)  # the radii calibration chooses from (besides no memory)
# newest rows kept: 20,000 × 384 float32 is 30 MB in the head's file, plus a one-hot row of
# the labels per memory row (20,000 × 150 labels: 12 MB more)
MAX_ROWS = 20_000


@dataclass(frozen=True)
class Memory:
    vectors: np.ndarray  # float32 [n, dim], unit length
    labels: np.ndarray  # int64 [n]
    n_labels: int
    radius: float
    k: int = K
    weight: float = WEIGHT

    def with_radius(self, radius: float) -> Memory:
        return Memory(self.vectors, self.labels, self.n_labels, radius, self.k, self.weight)

    def mix(self, p_head: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The memory-mixed probabilities (before the final temperature), in numpy."""
        if len(x) == 0:
            return p_head
        k = self.k  # build_memory keeps at least k rows
        sims = np.asarray(x, dtype=np.float32) @ self.vectors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(sims, top, axis=1)
        close = (values >= self.radius).astype(np.float32)
        counts = np.zeros((len(x), self.n_labels), dtype=np.float32)
        rows = np.repeat(np.arange(len(x)), k)
        np.add.at(counts, (rows, self.labels[top].ravel()), close.ravel())
        q = (counts + (k - close.sum(axis=1, keepdims=True)) * p_head) / k
        return np.asarray((1 - self.weight) * p_head + self.weight * q, dtype=np.float32)


def build_memory(x: np.ndarray, y: np.ndarray, texts: list[str], n_labels: int
                 ) -> Memory | None:
    """The memory of the training rows: one row per distinct text (its last label), the
    newest ``MAX_ROWS``; None when there are too few rows to vote."""
    last: dict[str, int] = {}
    for i, text in enumerate(texts):
        last[text] = i
    keep = np.array(sorted(last.values()), dtype=np.int64)[-MAX_ROWS:]
    if len(keep) < K:  # the vote needs K rows (Memory.mix and the graph's TopK rely on it)
        return None
    vectors = np.asarray(x[keep], dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return Memory(np.ascontiguousarray(vectors), np.asarray(y[keep], dtype=np.int64),
                  n_labels, RADII[0])


def memory_nodes(memory: Memory, probs: str, out: str
                 ) -> tuple[list[NodeProto], list[TensorProto]]:
    """ONNX nodes mixing ``memory``'s vote into the head's ``probs`` [batch, labels] → ``out``
    (input ``embedding`` [batch, dim]); the numpy ``Memory.mix`` is the reference."""
    k = memory.k
    onehot = np.eye(memory.n_labels, dtype=np.float32)[memory.labels]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(memory.vectors.T), "mem_t"),
        numpy_helper.from_array(onehot, "mem_onehot"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "mem_k"),
        numpy_helper.from_array(np.array(memory.radius, dtype=np.float32), "mem_radius"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"),
        numpy_helper.from_array(np.array(float(k), dtype=np.float32), "k_f"),
        numpy_helper.from_array(np.array(1 - memory.weight, dtype=np.float32), "w_head"),
        numpy_helper.from_array(np.array(memory.weight / k, dtype=np.float32), "w_vote"),
    ]
    nodes = [
        helper.make_node("MatMul", ["embedding", "mem_t"], ["sims"]),
        helper.make_node("TopK", ["sims", "mem_k"], ["near", "near_idx"], axis=1),
        helper.make_node("GreaterOrEqual", ["near", "mem_radius"], ["is_close"]),
        helper.make_node("Cast", ["is_close"], ["close"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["mem_onehot", "near_idx"], ["votes"], axis=0),
        helper.make_node("Unsqueeze", ["close", "minus1"], ["close3"]),
        helper.make_node("Mul", ["votes", "close3"], ["close_votes"]),
        helper.make_node("ReduceSum", ["close_votes", "axis1"], ["counts"], keepdims=0),
        helper.make_node("ReduceSum", ["close", "axis1"], ["n_close"], keepdims=1),
        helper.make_node("Sub", ["k_f", "n_close"], ["n_far"]),
        helper.make_node("Mul", ["n_far", probs], ["fill"]),
        helper.make_node("Add", ["counts", "fill"], ["vote_sum"]),  # k · q
        helper.make_node("Mul", [probs, "w_head"], ["part_head"]),
        helper.make_node("Mul", ["vote_sum", "w_vote"], ["part_vote"]),
        helper.make_node("Add", ["part_head", "part_vote"], [out]),
    ]
    return nodes, inits
