"""ONNX export as one self-contained file, refused unless it matches torch.

The graph takes ``ids`` (int64 [batch, L]) and ``mask`` (float32 [batch, L]), batch and
length dynamic, and returns ``probs`` (float32 [batch, labels]): an ``Embedding`` gather,
summed (padding's row is zero) and divided by the mask's sum, a linear layer, a softmax with
the calibrated temperature baked in (``logits / T``), so that a served model's confidences
are already calibrated and nothing outside the file needs to know T.

Smaller files where parity holds: ``weights="float16"`` stores the embedding table (nearly
all of a model's bytes: 2^18 x 64 float32 is 64 MB) as float16 and casts the *gathered* rows
to float32 inside the graph (a Cast of [batch, L, dim], not of the table), halving the
file; all-zero rows (the buckets training never touched) are pruned behind an id remap
(``_compact_table``). ``export_checked`` tries the smaller form first and keeps it only if
the parity check below passes against the float32 torch network; else it exports float32
(and that must pass).

The legacy TorchScript exporter (``dynamo=False``) writes every initializer inline; the
bytes are checked to hold no external-data reference, so a model is exactly one file whose
sha256 covers all of it. Parity: on a sample, onnxruntime's probabilities must be within
``tolerance`` of the *training* network's eager softmax (``embedding_bag`` pooling), which
also proves that the exported gather form computes the same function; and, because a
saturated softmax hides differences, log-probabilities must agree within 1e-3 wherever a
probability exceeds 1e-20.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

from distillery.errors import ModelError
from models.featurize import Featurizer
from models.network import ExportedStudent, StudentNet

OPSET = 17
LOG_TOLERANCE = 1e-3  # on log-probabilities, where either probability is above 1e-20
WEIGHT_TYPES = ("float16", "float32")

log = logging.getLogger(__name__)


def export_checked(net: StudentNet, temperature: float, featurizer: Featurizer,
                   sample: list[str], weights: str = "float16",
                   tolerance: float = 1e-4) -> tuple[bytes, float, str]:
    """Export and check parity; float16 weights if they pass, else float32.

    Returns (bytes, largest probability difference, the weights' type). A float32 export
    that fails the check raises ``ModelError``, as ``check_parity`` does.
    """
    if weights not in WEIGHT_TYPES:
        raise ModelError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    if weights == "float16":
        data = export_onnx(net, temperature, weights="float16")
        try:
            return data, check_parity(data, net, temperature, featurizer, sample,
                                      tolerance), "float16"
        except ModelError as exc:
            log.warning("float16 weights fail the parity check (%s): exporting float32", exc)
    data = export_onnx(net, temperature)
    return data, check_parity(data, net, temperature, featurizer, sample, tolerance), "float32"


def export_onnx(net: StudentNet, temperature: float, weights: str = "float32") -> bytes:
    """Serialise ``net`` at ``temperature`` to ONNX bytes (weights inline, one file);
    ``weights="float16"`` stores the embedding table as float16 (cast after the gather)."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ModelError(f"temperature must be positive and finite, got {temperature}")
    try:
        module = ExportedStudent(net, temperature).eval()
    except ValueError as exc:
        raise ModelError(f"cannot export: {exc}") from exc
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.float32)
    buffer = io.BytesIO()
    axes = {"ids": {0: "batch", 1: "length"}, "mask": {0: "batch", 1: "length"},
            "probs": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (ids, mask), buffer,  # type: ignore[arg-type]
                              input_names=["ids", "mask"],
                              output_names=["probs"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types; wrap them where they enter
        raise ModelError(f"ONNX export failed: {exc}") from exc
    data = _compact_table(buffer.getvalue(), half=weights == "float16")
    _check_self_contained(data)
    return data


PRUNE_BELOW = 0.8  # prune when at most this share of the table's rows is non-zero


def _compact_table(data: bytes, half: bool) -> bytes:
    """The embedding table (the first Gather's data) made smaller, in one pass over the graph.

    ``half``: stored as float16, the gathered rows cast to float32 (a Cast of
    [batch, L, dim], not of the table). Then its all-zero rows are pruned: training zeroes
    the rows no training item touched (``models.train``), usually most of a 2^18-row table,
    and the graph gathers ``remap[ids]`` (int32, one entry per bucket: the row's place in
    the compact table, 0 for a zero row) from the compact table (row 0 is padding's zero
    row). The same numbers either way, and ``check_parity`` still checks them. No pruning
    when it would save little.
    """
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    at, gather = next((i, n) for i, n in enumerate(graph.node) if n.op_type == "Gather")
    table_proto = next(t for t in graph.initializer if t.name == gather.input[0])
    table = numpy_helper.to_array(table_proto)
    if half:
        table = table.astype(np.float16)
        if not np.isfinite(table).all():
            raise ModelError("the embedding table does not fit float16")
        gathered = gather.output[0]
        gather.output[0] = f"{gathered}_f16"
        graph.node.insert(at + 1, helper.make_node(
            "Cast", [gather.output[0]], [gathered], to=onnx.TensorProto.FLOAT,
            name="cast_rows_to_float32"))
    keep = np.flatnonzero(np.any(table != 0, axis=1))
    keep = keep[keep > 0]
    if len(keep) + 1 <= PRUNE_BELOW * len(table):
        remap = np.zeros(len(table), dtype=np.int32)
        remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
        table = np.concatenate([np.zeros((1, table.shape[1]), dtype=table.dtype), table[keep]])
        remap_name = f"{table_proto.name}_row_of_id"
        graph.initializer.append(numpy_helper.from_array(remap, remap_name))
        compact_ids = f"{gather.input[1]}_compact"
        graph.node.insert(at, helper.make_node("Gather", [remap_name, gather.input[1]],
                                               [compact_ids], name="rows_of_ids"))
        gather.input[1] = compact_ids
    table_proto.CopyFrom(numpy_helper.from_array(table, table_proto.name))
    return bytes(model.SerializeToString())


def _check_self_contained(data: bytes) -> None:
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    external = [t.name for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelError(f"ONNX export refers to external data for {external[:3]}; refused")


def check_parity(data: bytes, net: StudentNet, temperature: float, featurizer: Featurizer,
                 sample: list[str], tolerance: float = 1e-4) -> float:
    """Largest |onnx - torch| probability difference on ``sample``; raises past ``tolerance``."""
    ids, mask = featurizer.transform(sample or ["parity"])
    try:
        options = ort.SessionOptions()  # one thread, like serving: a busy machine stalls more
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        got = session.run(["probs"], {"ids": ids, "mask": mask})[0]
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelError(f"onnxruntime cannot run the exported model: {exc}") from exc
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(ids)) / temperature, dim=-1).numpy()
    if got.shape != want.shape:
        raise ModelError(f"ONNX output shape {got.shape} differs from torch's {want.shape}; "
                         "export refused")
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise ModelError(f"ONNX export differs from torch by {diff:.2e} (> {tolerance:.0e}); "
                         "export refused")
    log_diff = _log_diff(got, want)
    if log_diff > LOG_TOLERANCE:
        raise ModelError(f"ONNX export's log-probabilities differ from torch's by "
                         f"{log_diff:.2e} (> {LOG_TOLERANCE:.0e}); export refused")
    return diff


def _log_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |log p - log q| where either is above 1e-20.

    A confident model saturates its softmax, and two different networks can then agree
    within 1e-4 in absolute probability on every item; their log-probabilities still differ.
    """
    live = np.maximum(got, want) > 1e-20
    if not live.any():
        return 0.0
    floor = np.float32(1e-30)
    return float(np.abs(np.log(np.maximum(got[live], floor))
                        - np.log(np.maximum(want[live], floor))).max())
