"""The student network: mean of hashed n-gram embeddings → linear (softmax outside).

Training pools with ``F.embedding_bag(mode="mean", padding_idx=0)`` over the rows a batch
touches (see ``models.train``); the exported graph pools with a plain ``Embedding`` gather,
summed and divided by the mask's sum (padding's row is zero). Both are the same function of the
same weights (id 0 is padding and its row is zero), and the export's parity check proves it
on every export. The gather form runs several times faster in onnxruntime than an exported
``EmbeddingBag`` with offsets, which becomes a per-bag ``Loop``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StudentNet(nn.Module):
    def __init__(self, buckets: int, dim: int, n_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(buckets + 1, dim, padding_idx=0)
        self.linear = nn.Linear(dim, n_labels)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    @property
    def n_labels(self) -> int:
        return int(self.linear.out_features)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the non-padding rows of every item: EmbeddingBag's mean pooling."""
        return F.embedding_bag(ids, self.embedding.weight, mode="mean", padding_idx=0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, labels] from ids int64 [batch, L] (0 = padding).

        ``mask`` is accepted for symmetry with the exported graph; it must equal ``ids > 0``,
        which is what the featurizer produces.
        """
        return self.linear(self.pooled(ids))


class ExportedStudent(nn.Module):
    """What goes into the ONNX file: gather, sum / mask-sum, linear, softmax at temperature T.

    The gathered vectors are not multiplied by the mask: row 0 (padding) of the weights is
    exactly zero (training keeps it so and ``__init__`` checks it), so padding adds nothing
    to the sum, and onnxruntime skips a pass over [batch, L, dim].
    The mask still gives the mean its divisor.
    """

    def __init__(self, net: StudentNet, temperature: float) -> None:
        super().__init__()
        weight = net.embedding.weight
        if bool(weight[0].abs().max() != 0):
            raise ValueError("the padding row of the embedding must be zero")
        self.weight = weight
        self.linear = net.linear
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        summed = F.embedding(ids, self.weight).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        logits = self.linear(pooled) * self.inv_temperature
        return torch.softmax(logits, dim=-1)
