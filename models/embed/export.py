"""Export the MiniLM encoder to one self-contained ONNX file, once, into the cache.

``ensure_encoder(cache_dir)`` returns the directory holding ``encoder.onnx``,
``tokenizer.json`` and ``manifest.json`` (the file's sha256, the weights' sha256, the parity
found); if it is missing it is built from the installed weights package — torch is imported
only then. ``scripts/bootstrap`` builds it at set-up (``python -m models.embed.export``), so a
worker normally finds it; nothing is committed (the file is ~90 MB) and nothing is
downloaded.

The graph takes ``input_ids`` and ``attention_mask`` (int64 [batch, length], both axes
dynamic) and returns ``embedding`` (float32 [batch, 384], unit norm): mean pooling and the
normalisation are in the graph. Parity: onnxruntime's embeddings must be within
``TOLERANCE`` of torch eager's on a sample, or the export is refused.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from distillery.errors import ModelError
from models.embed import weights as weight_files

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
INT8_FILE = "encoder-int8.onnx"  # the same graph, its MatMul weights int8 per channel
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
OPSET = 17
TOLERANCE = 1e-4  # largest |onnx - torch| on a unit-norm embedding component
INT8_MIN_COSINE = 0.95  # the int8 encoder's embeddings against the float one's, each text
MAX_LENGTH = 128  # tokens, [CLS] and [SEP] included (the model was trained at 128)
PARITY_SAMPLE = [
    "My card was stolen and there are charges I did not make.",
    "how do I freeze my account",
    "What's the weather like tomorrow in Paris?",
    "you people are the worst, I will find where you live",
    "",
    "Refund please!!! order #4411 arrived broken " * 6,
]


def encoder_dir(cache_dir: Path) -> Path:
    return cache_dir / "embed" / f"{weight_files.NAME}-{weight_files.WEIGHTS_SHA256[:12]}"


def ensure_encoder(cache_dir: Path) -> Path:
    """The exported encoder's directory, building it first if it is not there yet (and its
    int8 copy if a cache from before it has only the float file)."""
    target = encoder_dir(cache_dir)
    if (target / MANIFEST_FILE).is_file() and (target / ENCODER_FILE).is_file():
        manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
        if "int8_sha256" not in manifest or not (target / INT8_FILE).is_file():
            add_int8(target, manifest)
        return target
    build_encoder(target)
    return target


def build_encoder(target: Path) -> dict[str, Any]:
    """Export, parity-check and write the encoder into ``target`` (atomically)."""
    import torch

    from models.embed.bert import load_minilm
    from models.stage import sha256_of

    files = weight_files.verified()
    log.info("exporting %s to ONNX into %s", weight_files.NAME, target)
    model = load_minilm(str(files.weights))
    data = _export(model, torch)
    tokenizer_bytes = files.tokenizer.read_bytes()
    parity = check_parity(data, tokenizer_bytes, model)
    int8 = quantize_int8(data)
    manifest: dict[str, Any] = {
        "name": weight_files.NAME,
        "weights_sha256": weight_files.WEIGHTS_SHA256,
        "sha256": sha256_of(data),
        "tokenizer_sha256": sha256_of(tokenizer_bytes),
        "dim": int(model.word.embedding_dim),
        "max_length": MAX_LENGTH,
        "parity": parity,
        "licence": weight_files.LICENCE,
        "torch": torch.__version__,
        **int8_entries(data, int8, tokenizer_bytes),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        (staging / ENCODER_FILE).write_bytes(data)
        (staging / INT8_FILE).write_bytes(int8)
        (staging / TOKENIZER_FILE).write_bytes(tokenizer_bytes)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("encoder exported (%d bytes, parity %.1e)", len(data), parity)
    return manifest


def _export(model: Any, torch: Any) -> bytes:
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "embedding": {0: "batch"}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids, mask), buffer, input_names=["input_ids",
                              "attention_mask"], output_names=["embedding"],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types; wrap them where they enter
        raise ModelError(f"encoder ONNX export failed: {exc}") from exc
    from models.export import _check_self_contained

    data = buffer.getvalue()
    _check_self_contained(data)
    return data


def quantize_int8(data: bytes) -> bytes:
    """onnxruntime's dynamic quantisation of the float graph: MatMul weights int8, one scale
    per output channel, activations quantised per batch at run time (README "The second
    tier": per tensor, or with the embedding table quantised too, drifted further)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="distillery-int8-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        try:
            root = logging.getLogger()  # the quantiser logs a pre-processing hint there
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"],
                                 per_channel=True, weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
        except Exception as exc:  # the quantiser raises many types; wrap them where they enter
            raise ModelError(f"encoder int8 quantisation failed: {exc}") from exc
        return dst.read_bytes()


def int8_cosine(data: bytes, int8: bytes, tokenizer_bytes: bytes,
                sample: list[str] | None = None) -> float:
    """The lowest cosine between the int8 and the float encoder's embedding of a text of
    ``sample``; refuses the int8 file below ``INT8_MIN_COSINE``."""
    from models.embed.encoder import TextEncoder

    texts = sample or PARITY_SAMPLE
    want = TextEncoder.from_bytes(data, tokenizer_bytes).encode(texts)
    got = TextEncoder.from_bytes(int8, tokenizer_bytes).encode(texts)
    low = float((want * got).sum(axis=1).min())
    if not np.isfinite(low) or low < INT8_MIN_COSINE:
        raise ModelError(f"the int8 encoder's embeddings reach cosine {low:.3f} with the float "
                         f"ones (< {INT8_MIN_COSINE}); refused")
    return low


def int8_entries(data: bytes, int8: bytes, tokenizer_bytes: bytes) -> dict[str, Any]:
    from models.stage import sha256_of

    return {"int8_sha256": sha256_of(int8),
            "int8_min_cosine": int8_cosine(data, int8, tokenizer_bytes)}


def add_int8(target: Path, manifest: dict[str, Any]) -> None:
    """Quantise an already exported float encoder in place (atomically per file)."""
    data = (target / ENCODER_FILE).read_bytes()
    tokenizer_bytes = (target / TOKENIZER_FILE).read_bytes()
    log.info("quantising the encoder in %s to int8", target)
    int8 = quantize_int8(data)
    manifest = {**manifest, **int8_entries(data, int8, tokenizer_bytes)}
    for name, payload in ((INT8_FILE, int8), (MANIFEST_FILE,
                          json.dumps(manifest, indent=2).encode("utf-8"))):
        staging = target / f".{name}.tmp"
        staging.write_bytes(payload)
        os.replace(staging, target / name)


def check_parity(data: bytes, tokenizer_bytes: bytes, model: Any,
                 sample: list[str] | None = None) -> float:
    """Largest |onnxruntime - torch| embedding component on ``sample``; refuses past
    ``TOLERANCE``."""
    import torch

    from models.embed.encoder import TextEncoder

    encoder = TextEncoder.from_bytes(data, tokenizer_bytes, max_length=MAX_LENGTH)
    texts = sample or PARITY_SAMPLE
    ids, mask = encoder.tokenize(texts)
    got = encoder.run(ids, mask)
    with torch.no_grad():
        want = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    diff = float(np.abs(got - want).max())
    if not np.isfinite(diff) or diff > TOLERANCE:
        raise ModelError(f"encoder ONNX differs from torch by {diff:.2e} (> {TOLERANCE:.0e}); "
                         "export refused")
    return diff


def main() -> None:
    """``python -m models.embed.export``: build the encoder into the cache (bootstrap)."""
    from distillery.settings import default_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = ensure_encoder(default_settings().cache_dir)  # an older cache gains its int8 file
    manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
    print(f"encoder ready in {target} (parity {manifest['parity']:.1e}, int8 cosine "
          f"{manifest['int8_min_cosine']:.3f})")


if __name__ == "__main__":
    main()
