"""A static distillation of the encoder into a token-embedding table (model2vec's method).

Each vocabulary token is run through the full encoder alone (``[CLS] token [SEP]``), its
pooled output kept as the token's row; the table is reduced with PCA and each row weighted
by a SIF weight from the token's rank (``sif / (sif + p(rank))``, Zipf's law standing in for
frequencies). A text's embedding is then the mean of its tokens' rows, normalised: a lookup,
no transformer at run time. Measured against the full encoder before choosing (README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.embed.encoder import TextEncoder

SPECIAL = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK] in the MiniLM vocabulary


@dataclass(frozen=True)
class StaticTable:
    table: np.ndarray  # float32 [vocab, dims]


def distill_table(encoder: TextEncoder, *, dims: int = 256, sif: float = 1e-4,
                  batch_size: int = 512) -> StaticTable:
    vocab = encoder.tokenizer.get_vocab_size()
    cls_id, sep_id = 101, 102
    rows = np.zeros((vocab, encoder.dim), dtype=np.float32)
    for start in range(0, vocab, batch_size):
        ids_ = np.arange(start, min(vocab, start + batch_size), dtype=np.int64)
        ids = np.stack([np.full_like(ids_, cls_id), ids_, np.full_like(ids_, sep_id)], axis=1)
        rows[ids_] = encoder.run(ids, np.ones_like(ids))
    centred = rows - rows.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[: min(dims, vt.shape[0])].T
    rank = np.arange(1, vocab + 1, dtype=np.float64)
    proba = (1.0 / rank) / np.sum(1.0 / rank)
    weights = sif / (sif + proba)
    return StaticTable((reduced * weights[:, None]).astype(np.float32))


class StaticEncoder:
    def __init__(self, table: StaticTable, encoder: TextEncoder) -> None:
        self.table = table.table
        self.tokenizer = encoder.tokenizer
        self.dim = int(self.table.shape[1])
        self._special = np.asarray(SPECIAL)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, enc in enumerate(self.tokenizer.encode_batch(texts)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            ids = ids[~np.isin(ids, self._special)]
            if len(ids):
                v = self.table[ids].mean(axis=0)
                out[row] = v / max(float(np.linalg.norm(v)), 1e-9)
        return out
