"""The student network: embedding (mean over the mask) → linear; softmax outside or in export.

``Embedding`` over padded ids with a mask, not ``EmbeddingBag`` with offsets: the same
weights, but the exported ONNX graph is a Gather and a few element-wise ops instead of a
per-bag Loop, several times faster in onnxruntime (DESIGN §6).
"""

from __future__ import annotations

import torch
from torch import nn


class StudentNet(nn.Module):
    def __init__(self, buckets: int, dim: int, n_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(buckets + 1, dim, padding_idx=0, sparse=True)
        self.linear = nn.Linear(dim, n_labels)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits [batch, labels] from ids int64 [batch, L] and mask float32 [batch, L]."""
        vectors = self.embedding(ids) * mask.unsqueeze(-1)
        pooled = vectors.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.linear(pooled)


class ExportedStudent(nn.Module):
    """What goes into the ONNX file: probabilities at a fixed temperature."""

    def __init__(self, net: StudentNet, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(ids, mask) * self.inv_temperature, dim=-1)
