"""The backtest's sentence embeddings, cached on disk by text hash across runs.

A ``backtest --tiers ngram,embed`` embeds each distinct text of the history once ever: the
vectors go to ``<cache_dir>/embed/backtest-embeddings-int8.sqlite`` (``...embeddings.sqlite``
with ``DISTILLERY_EMBED_PRECISION=float32``; the trainer store's
``embeddings`` table, ``workers.trainer.embeddings``, with the id left empty so the key is
the text's sha256 alone; float16). A second run over the same history encodes nothing.
``TextEmbeddings`` is both the refresh's ``Embedder`` and, through ``encode``, the encoder
the backtest's embed stage (``models.stage.Stage``) scores with; the ONNX
encoder itself is loaded only when a text is new.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from distillery.settings import Settings
from workers.trainer.embeddings import StoredEmbeddings

CACHE_FILE = "backtest-embeddings.sqlite"  # float32's; other precisions add theirs


def cache_file(settings: Settings) -> str:
    """The cache's file name for the encoder precision in use (vectors differ by it)."""
    if settings.embed_precision == "float32":
        return CACHE_FILE
    return CACHE_FILE.replace(".sqlite", f"-{settings.embed_precision}.sqlite")


class TextEmbeddings:
    def __init__(self, settings: Settings) -> None:
        folder = settings.cache_dir / "embed"
        folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.db = sqlite3.connect(str(folder / cache_file(settings)), timeout=60)
        self.stored = StoredEmbeddings(self.db, self._encode)
        self._encoder: Any = None

    @property
    def encoded(self) -> int:
        return self.stored.encoded

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from models.stage import encoder_loader

            self._encoder = encoder_loader(self.settings.cache_dir,
                                           self.settings.embed_threads,
                                           self.settings.embed_precision)()
        return np.asarray(self._encoder.encode(texts, 64), dtype=np.float32)

    def embed(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Vectors by text alone (``ids`` are ignored: a text's vector does not depend on
        which item carried it)."""
        return self.stored.embed([""] * len(texts), texts)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.embed([], texts) if texts else np.zeros((0, 0), dtype=np.float32)

    def student(self, settings: Settings, task: str) -> Any:
        """The serving embed-stage version of ``task`` in ``settings``' registry, scoring
        through this cache."""
        from models.registry import Registry
        from models.stage import Stage, registry_key

        manifest = Registry(settings.registry_root).serving(registry_key(task, "embed"))
        if manifest is None:
            return None
        return Stage.load(manifest.directory, expected_sha256=manifest.sha256,
                          threads=settings.student_threads, encoder=lambda: cast(Any, self))

    def close(self) -> None:
        self.db.close()
