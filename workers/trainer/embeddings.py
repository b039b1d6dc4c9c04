"""Sentence embeddings kept beside the training data, so a refresh never re-embeds history.

Tier 2 (``models.embed``) trains its head on the MiniLM embeddings of the same texts tier 1
trains on. Embedding costs ~5 ms an item on these cores, so each text is embedded once and
its vector kept in SQLite: the table ``embeddings`` (in the trainer's store, or in a cache
file of its own for the backtest) is keyed by item id + the text's sha256 (an item whose
text changes is embedded again), the vector stored as float16 bytes (half the size; a
unit-norm MiniLM vector loses < 1e-3 per component). ``StoredEmbeddings.embed`` returns the
vectors of any list of (id, text), encoding only those it does not hold, and counts what it
encoded (``encoded``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
  id TEXT NOT NULL, text_hash TEXT NOT NULL, dtype TEXT NOT NULL, dim INTEGER NOT NULL,
  vector BLOB NOT NULL, PRIMARY KEY (id, text_hash)
);
"""

Encode = Callable[[list[str]], np.ndarray]


def text_hash(text: str) -> str:
    """The sha256 of the text's UTF-8 bytes, in hex (the key beside the item id).

    >>> text_hash("hello")[:12]
    '2cf24dba5fb0'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StoredEmbeddings:
    """Embeddings by (id, text hash) in ``db``; ``encode`` is called only for new ones."""

    def __init__(self, db: sqlite3.Connection, encode: Encode, dtype: str = "float16",
                 chunk: int = 512) -> None:
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, got {dtype}")
        self.db = db
        self.db.executescript(SCHEMA)
        self.encode = encode
        self.dtype = dtype
        self.chunk = chunk
        self.encoded = 0  # texts encoded by this object (the rest came from the table)
        self.calls = 0  # calls to ``encode``

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def _lookup(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        found: dict[tuple[str, str], np.ndarray] = {}
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), 400):  # SQLite's bound-parameter limit
            part = wanted[start:start + 400]
            marks = ",".join("(?,?)" for _ in part)
            rows = self.db.execute(
                "SELECT id, text_hash, dtype, dim, vector FROM embeddings WHERE "
                f"(id, text_hash) IN (VALUES {marks})", [x for k in part for x in k])
            for item_id, h, dtype, dim, blob in rows:
                found[(item_id, h)] = np.frombuffer(blob, dtype=dtype).reshape(dim)
        return found

    def embed(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], row i the embedding of ``texts[i]``."""
        keys = [(str(i), text_hash(t)) for i, t in zip(ids, texts, strict=True)]
        known = self._lookup(keys)
        todo: dict[tuple[str, str], str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in known:
                todo.setdefault(key, text)
        pending = list(todo.items())
        for start in range(0, len(pending), self.chunk):
            part = pending[start:start + self.chunk]
            vectors = np.asarray(self.encode([t for _, t in part]), dtype=np.float32)
            self.calls += 1
            self.encoded += len(part)
            rows = []
            for (key, _), vector in zip(part, vectors, strict=True):
                stored = vector.astype(self.dtype)
                known[key] = stored
                rows.append((key[0], key[1], self.dtype, int(stored.shape[0]),
                             stored.tobytes()))
            self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?)", rows)
            self.db.commit()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)
