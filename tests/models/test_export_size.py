"""Smaller model files where parity holds: float16 embedding table, cast inside the graph."""

from __future__ import annotations

import onnx
import pytest
import torch

from distillery.errors import ModelError
from models.export import export_checked, export_onnx
from models.featurize import Featurizer, FeaturizerConfig
from models.network import StudentNet

TEXTS = [f"my order {i} never arrived, refund please" for i in range(50)] + [
    "reset my password", "the app crashes on start", "cancel my subscription today"]


def _net(buckets: int = 1 << 12) -> tuple[StudentNet, Featurizer]:
    torch.manual_seed(0)
    net = StudentNet(buckets, 16, 4)
    with torch.no_grad():
        net.embedding.weight.normal_(0.0, 0.3)
        net.embedding.weight[0].zero_()
        net.linear.weight.normal_(0.0, 1.0)
    return net, Featurizer(FeaturizerConfig(buckets=buckets, max_ids=64))


def test_float16_table_halves_the_file_and_passes_parity() -> None:
    net, featurizer = _net()
    full = export_onnx(net, 1.0)
    data, diff, kind = export_checked(net, 1.0, featurizer, TEXTS)
    assert kind == "float16"
    assert diff < 1e-4
    assert len(data) < 0.55 * len(full)
    model = onnx.load_from_string(data)  # one self-contained file, the table stored as fp16
    table = next(t for t in model.graph.initializer if t.name == "weight")
    assert table.data_type == onnx.TensorProto.FLOAT16
    assert any(n.op_type == "Cast" for n in model.graph.node)


def test_falls_back_to_float32_when_float16_misses_parity() -> None:
    net, featurizer = _net()
    data, diff, kind = export_checked(net, 1.0, featurizer, TEXTS, tolerance=1e-6)
    assert kind == "float32" and diff <= 1e-6
    with pytest.raises(ModelError):  # float32 must pass too, or nothing is exported
        export_checked(net, 1.0, featurizer, TEXTS, tolerance=1e-12)


def test_zero_rows_are_pruned_behind_a_remap_with_the_same_numbers() -> None:
    net, featurizer = _net(buckets=1 << 14)
    with torch.no_grad():  # what training leaves: only the rows its items touched
        ids, _ = featurizer.transform(TEXTS[:20])
        seen = torch.zeros(net.embedding.weight.shape[0], dtype=torch.bool)
        seen[torch.unique(torch.from_numpy(ids))] = True
        net.embedding.weight[~seen] = 0.0
    unpruned = export_onnx(_dense_copy(net), 1.0, weights="float16")
    data, diff, kind = export_checked(net, 1.0, featurizer, TEXTS)
    assert kind == "float16" and diff < 1e-4  # unseen texts too: their rows read as zero
    assert len(data) < 0.2 * len(unpruned)
    model = onnx.load_from_string(data)
    table = next(t for t in model.graph.initializer if t.name == "weight")
    assert table.dims[0] == int(seen[1:].sum()) + 1  # the touched rows and padding's
    assert [n.name for n in model.graph.node if n.op_type == "Gather"][0] == "rows_of_ids"


def test_a_table_with_few_zero_rows_is_left_whole() -> None:
    net, _ = _net()
    model = onnx.load_from_string(export_onnx(net, 1.0, weights="float16"))
    assert not any(n.name == "rows_of_ids" for n in model.graph.node)


def _dense_copy(net: StudentNet) -> StudentNet:
    """The same network with every row non-zero: an export that cannot be pruned."""
    import copy

    other = copy.deepcopy(net)
    with torch.no_grad():
        other.embedding.weight[1:].add_(1e-3)
    return other
