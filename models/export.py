"""ONNX export as one self-contained file, refused unless it matches torch.

The graph takes ``ids`` (int64 [batch, L]) and ``mask`` (float32 [batch, L]), both with
dynamic batch and length, and returns ``probs`` (float32 [batch, labels]) with the
calibrated temperature baked in. Parity: on a sample, onnxruntime's probabilities must be
within ``tolerance`` of torch eager's, else ``ModelError``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

from distillery.errors import ModelError
from models.featurize import Featurizer
from models.network import ExportedStudent, StudentNet

OPSET = 17


def export_onnx(net: StudentNet, temperature: float) -> bytes:
    """Serialise ``net`` at ``temperature`` to ONNX bytes (weights inline, one file)."""
    module = ExportedStudent(net, temperature).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (ids, mask), buffer, input_names=["ids", "mask"], output_names=["probs"],
            dynamic_axes={"ids": {0: "batch", 1: "length"}, "mask": {0: "batch", 1: "length"},
                          "probs": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def check_parity(data: bytes, net: StudentNet, temperature: float, featurizer: Featurizer,
                 sample: list[str], tolerance: float = 1e-4) -> float:
    """Largest |onnx - torch| probability difference on ``sample``; raises past ``tolerance``."""
    ids, mask = featurizer.transform(sample or ["parity"])
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"ids": ids, "mask": mask})[0]
    with torch.no_grad():
        want = ExportedStudent(net, temperature)(torch.from_numpy(ids), torch.from_numpy(mask))
    diff = float(np.abs(got - want.numpy()).max())
    if not np.isfinite(diff) or diff > tolerance:
        raise ModelError(f"ONNX export differs from torch by {diff:.2e} (> {tolerance:.0e}); "
                         "export refused")
    return diff
