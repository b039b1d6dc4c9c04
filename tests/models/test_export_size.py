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
