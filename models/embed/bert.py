"""The MiniLM (BERT) encoder in plain torch, for export only: embeddings → 6 transformer
layers → mean pooling over the attention mask → L2 normalisation, as sentence-transformers
computes all-MiniLM-L6-v2's sentence embedding (``Transformer`` → ``Pooling(mean)`` →
``Normalize``).

Written out rather than loaded through transformers/sentence-transformers so that exporting
needs only torch and the safetensors file (sentence-transformers would pull a click that
faust-streaming refuses). ``tests/models/test_embed.py`` checks it against vectors that
sentence-transformers itself produced (``scripts/embed_reference.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

HIDDEN = 384
HEADS = 12
LAYERS = 6
EPS = 1e-12


class _Layer(nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], prefix: str) -> None:
        super().__init__()

        def linear(name: str) -> nn.Linear:
            weight = w[f"{prefix}{name}.weight"]
            layer = nn.Linear(weight.shape[1], weight.shape[0])
            layer.weight.data.copy_(weight)
            layer.bias.data.copy_(w[f"{prefix}{name}.bias"])
            return layer

        def norm(name: str) -> nn.LayerNorm:
            layer = nn.LayerNorm(HIDDEN, eps=EPS)
            layer.weight.data.copy_(w[f"{prefix}{name}.weight"])
            layer.bias.data.copy_(w[f"{prefix}{name}.bias"])
            return layer

        self.query = linear("attention.self.query")
        self.key = linear("attention.self.key")
        self.value = linear("attention.self.value")
        self.attn_out = linear("attention.output.dense")
        self.attn_norm = norm("attention.output.LayerNorm")
        self.inter = linear("intermediate.dense")
        self.out = linear("output.dense")
        self.out_norm = norm("output.LayerNorm")

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        d = HIDDEN // HEADS

        def split(h: torch.Tensor) -> torch.Tensor:
            return h.view(b, t, HEADS, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        context = context.transpose(1, 2).reshape(b, t, HIDDEN)
        x = self.attn_norm(x + self.attn_out(context))
        hidden = nn.functional.gelu(self.inter(x))
        return self.out_norm(x + self.out(hidden))


class MiniLM(nn.Module):
    """``forward(input_ids, attention_mask)`` (int64 [batch, length]) → float32 [batch, 384],
    unit-norm sentence embeddings. Token type ids are all zero (single sentences)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        w = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
        self.word = nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
        self.position = nn.Embedding.from_pretrained(w["embeddings.position_embeddings.weight"])
        self.register_buffer("token_type", w["embeddings.token_type_embeddings.weight"][0])
        self.norm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.norm.weight.data.copy_(w["embeddings.LayerNorm.weight"])
        self.norm.bias.data.copy_(w["embeddings.LayerNorm.bias"])
        self.layers = nn.ModuleList(_Layer(w, f"encoder.layer.{i}.") for i in range(LAYERS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word(input_ids) + self.position(positions) + self.token_type)
        mask = attention_mask.to(x.dtype)
        bias = ((1.0 - mask) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        summed = (x * mask.unsqueeze(-1)).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1)


def load_minilm(weights_path: str) -> MiniLM:
    from safetensors.numpy import load_file

    return MiniLM(load_file(weights_path)).eval()
