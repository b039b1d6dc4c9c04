"""``distillery bench embed``: tier 2's encoder, items/s at batch 1, 32 and 128, onnxruntime
against torch eager in the same run, and resident memory.

Both paths tokenise the same texts with the same ``tokenizers`` tokenizer in the same
batches (padded to the batch's longest item) and compute the same unit-norm embeddings
(``models.embed.bert.MiniLM`` for torch, its ONNX export for onnxruntime); onnxruntime and
torch each get ``threads`` intra-op threads. Figures are medians over ``repeats`` runs; the
resident set size (``ru_maxrss`` / ``/proc/self/status``) is read after the onnxruntime part,
before torch is imported, and again at the end.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from distillery.settings import Settings
from models.embed.encoder import TextEncoder
from models.embed.export import ensure_encoder

BATCH_SIZES = (1, 32, 128)


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(run: Callable[[np.ndarray, np.ndarray], Any], encoder: TextEncoder,
          texts: list[str], batch: int) -> float:
    batches = [encoder.tokenize(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    started = time.perf_counter()
    for ids, mask in batches:
        run(ids, mask)
    return len(texts) / (time.perf_counter() - started)


def run_embed_bench(settings: Settings, texts: list[str], *, repeats: int = 3,
                    items: int = 512, threads: int = 1,
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Items/s (tokenisation excluded from the timed loop, identical for both) per batch size."""
    rss_start = _rss_mb()
    encoder = TextEncoder.load(ensure_encoder(settings.cache_dir), threads=threads)
    sample = texts[:items]
    encoder.run(*encoder.tokenize(sample[:8]))  # warm-up
    ort_rates: dict[str, list[float]] = {str(b): [] for b in BATCH_SIZES}
    for r in range(repeats):
        for b in BATCH_SIZES:
            n = min(len(sample), max(64, b * 4)) if b == 1 else len(sample)
            ort_rates[str(b)].append(_rate(encoder.run, encoder, sample[:n], b))
        progress(f"onnxruntime run {r + 1}/{repeats} done")
    rss_ort = _rss_mb()
    import torch

    from models.embed.bert import load_minilm
    from models.embed.weights import verified

    torch.set_num_threads(threads)
    model = load_minilm(str(verified().weights))

    def torch_run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    torch_run(*encoder.tokenize(sample[:8]))
    torch_rates: dict[str, list[float]] = {str(b): [] for b in BATCH_SIZES}
    for r in range(repeats):
        for b in BATCH_SIZES:
            n = min(len(sample), max(64, b * 4)) if b == 1 else len(sample)
            torch_rates[str(b)].append(_rate(torch_run, encoder, sample[:n], b))
        progress(f"torch eager run {r + 1}/{repeats} done")
    ort_med = {b: statistics.median(v) for b, v in ort_rates.items()}
    torch_med = {b: statistics.median(v) for b, v in torch_rates.items()}
    return {
        "items": len(sample), "repeats": repeats, "threads": threads,
        "mean_tokens": float(np.mean([len(e.ids) for e in
                                      encoder.tokenizer.encode_batch(sample)])),
        "items_per_s": ort_med, "torch_items_per_s": torch_med,
        "ratio_to_torch": {b: ort_med[b] / torch_med[b] for b in ort_med},
        "rss_mb": {"start": rss_start, "after_onnxruntime": rss_ort, "after_torch": _rss_mb()},
    }
