"""Serving the sentence encoder: ``tokenizers`` + onnxruntime, no torch.

``TextEncoder.load(directory, threads, precision)`` verifies ``encoder-int8.onnx`` (or, with
``precision="float32"``, ``encoder.onnx``) against its manifest's sha256 and opens one
onnxruntime session with ``threads`` intra-op threads;
``encode(texts)`` returns unit-norm float32 embeddings [n, dim]. Texts are sorted by length
and cut into batches so that a batch pads only to its own longest item.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from distillery.errors import ModelError
from models.stage import sha256_of


class TextEncoder:
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer,
                 max_length: int = 128) -> None:
        self.session = session
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.dim = int(session.get_outputs()[0].shape[-1])

    @classmethod
    def from_bytes(cls, model: bytes, tokenizer: bytes, max_length: int = 128,
                   threads: int = 1) -> TextEncoder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            tok = Tokenizer.from_str(tokenizer.decode("utf-8"))
        except Exception as exc:  # onnxruntime's and tokenizers' own exception types
            raise ModelError(f"cannot open the sentence encoder: {exc}") from exc
        return cls(session, tok, max_length)

    @classmethod
    def load(cls, directory: Path, threads: int = 1,
             precision: str = "int8") -> TextEncoder:
        """``precision``: ``int8`` (the quantised file, the default) or ``float32``."""
        from models.embed.export import ENCODER_FILE, INT8_FILE, MANIFEST_FILE, TOKENIZER_FILE

        name, key = (INT8_FILE, "int8_sha256") if precision == "int8" else (ENCODER_FILE,
                                                                             "sha256")
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
            model = (directory / name).read_bytes()
            tokenizer = (directory / TOKENIZER_FILE).read_bytes()
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"no usable encoder in {directory}: {exc}") from exc
        if sha256_of(model) != manifest.get(key):
            raise ModelError(f"{directory / name} does not match its manifest's "
                             "sha256; refused")
        if sha256_of(tokenizer) != manifest.get("tokenizer_sha256"):
            raise ModelError(f"{directory / TOKENIZER_FILE} does not match its manifest's "
                             "sha256; refused")
        return cls.from_bytes(model, tokenizer, int(manifest.get("max_length", 128)), threads)

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """int64 ``input_ids`` and ``attention_mask`` [n, longest], right-padded with 0."""
        encodings = self.tokenizer.encode_batch(texts)
        width = max((len(e.ids) for e in encodings), default=2)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        return ids, mask

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-norm embeddings [len(texts), dim], in the order given."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), max(1, batch_size)):
            rows = order[start:start + batch_size]
            ids, mask = self.tokenize([texts[i] for i in rows])
            out[rows] = self.run(ids, mask)
        return out
