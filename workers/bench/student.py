"""``distillery bench student``: featurise+infer items/s and training time, against torch eager.

Both the ONNX student and the torch eager baseline featurise the same texts in the same
batches in the same run; figures are medians over ``repeats`` runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillery.settings import Settings
from models.calibrate import softmax
from models.export import export_onnx
from models.featurize import Featurizer, FeaturizerConfig
from models.stage import Stage, sha256_of
from models.train import TrainConfig, train_net

BATCH_SIZES = (1, 32, 256)


def _rate(fn: Callable[[list[str]], Any], texts: list[str], batch: int, items: int) -> float:
    count = min(items, len(texts))
    started = time.perf_counter()
    for i in range(0, count, batch):
        fn(texts[i:i + batch])
    return count / (time.perf_counter() - started)


def _student_from(net: Any, featurizer: Featurizer, labels: list[str], tmp: Path,
                  threads: int) -> Stage:
    data = export_onnx(net, 1.0)
    (tmp / "model.onnx").write_bytes(data)
    manifest = {"task": "bench", "version": "bench", "labels": labels, "sha256": sha256_of(data),
                "thresholds": [0.5] * len(labels), "featurizer": featurizer.to_dict()}
    import json

    (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return Stage.load(tmp, threads=threads)


def run_student_bench(settings: Settings, texts: list[str], labels: list[str],
                      holdout: tuple[list[str], list[str]], tmp: Path, repeats: int = 5,
                      progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Benchmark on (texts, labels); ``holdout`` is for early stopping only."""
    featurizer = Featurizer(FeaturizerConfig(buckets=settings.student_buckets,
                                             max_ids=settings.student_max_ids))
    train_times = []
    trained = None
    for r in range(max(1, repeats // 2)):
        progress(f"training on {len(texts)} examples (run {r + 1})")
        trained = train_net(featurizer, texts, labels, holdout[0], holdout[1],
                            TrainConfig(dim=settings.student_dim, seed=r))
        train_times.append(trained.seconds)
    assert trained is not None
    torch.set_num_threads(settings.student_threads)
    student = _student_from(trained.net, featurizer, trained.labels, tmp, settings.student_threads)

    def torch_eager(batch: list[str]) -> np.ndarray:
        ids, mask = featurizer.transform(batch)
        with torch.no_grad():
            logits = trained.net(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        return softmax(logits)

    onnx_rates: dict[str, float] = {}
    torch_rates: dict[str, float] = {}
    for batch in BATCH_SIZES:
        items = 2000 if batch == 1 else 20000
        progress(f"batch {batch}: {repeats} runs each of onnxruntime and torch eager")
        onnx_runs, torch_runs = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine state
            onnx_runs.append(_rate(student.predict_many, texts, batch, items))
            torch_runs.append(_rate(torch_eager, texts, batch, items))
        onnx_rates[str(batch)] = statistics.median(onnx_runs)
        torch_rates[str(batch)] = statistics.median(torch_runs)
    return {
        "items_per_s": onnx_rates,
        "torch_items_per_s": torch_rates,
        "ratio_to_torch": {b: onnx_rates[b] / torch_rates[b] for b in onnx_rates},
        # the same ratio under the name every bench uses: absolute items/s vary 2-3x between
        # machines of one kind, the ratio to a baseline measured in the same run does not
        "ratio_to_baseline": {b: onnx_rates[b] / torch_rates[b] for b in onnx_rates},
        "baseline": "torch eager (same featuriser, same batches, same run)",
        "train_seconds": statistics.median(train_times),
        "train_runs": train_times,
        "train_examples": len(texts),
        "repeats": repeats,
        "threads": settings.student_threads,
        "buckets": settings.student_buckets,
    }
