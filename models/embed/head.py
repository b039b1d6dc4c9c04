"""Tier 2's head: a linear layer (multinomial logistic regression) on sentence embeddings.

Trained with torch (full-batch L-BFGS, L2, optional per-class weights) on the same labelled
texts as tier 1; scored in numpy; exported as a tiny ONNX graph built with ``onnx.helper``
(``embedding`` float32 [batch, dim] → ``probs`` float32 [batch, labels], the calibrated
temperature inside, like the tier-1 student's), refused unless onnxruntime matches numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from distillery.errors import ModelError
from models.calibrate import softmax
from models.embed.memory import Memory, memory_nodes

OPSET = 17
EPS = 1e-9


@dataclass(frozen=True)
class Head:
    weight: np.ndarray  # float32 [labels, dim]
    bias: np.ndarray  # float32 [labels]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.weight.T + self.bias, dtype=np.float32)


def train_head(x: np.ndarray, y: np.ndarray, n_labels: int, *, l2: float = 1e-5,
               class_weight: np.ndarray | None = None, max_iter: int = 200,
               threads: int = 1, seed: int = 0) -> Head:
    """Fit ``softmax(x W^T + b)`` to ``y`` (int [n]) by weighted cross-entropy + ``l2``·|W|²."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    target = torch.from_numpy(np.asarray(y, dtype=np.int64))
    weights = None if class_weight is None else torch.from_numpy(
        np.asarray(class_weight, dtype=np.float32))
    layer = torch.nn.Linear(features.shape[1], n_labels)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimiser = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter,
                                  history_size=20, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(layer(features), target) + l2 * layer.weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return Head(layer.weight.detach().numpy().astype(np.float32).copy(),
                layer.bias.detach().numpy().astype(np.float32).copy())


def scores(head: Head, x: np.ndarray, memory: Memory | None) -> np.ndarray:
    """What calibration fits its temperature over: the head's logits, or with a verdict
    memory the log of the memory-mixed probabilities (``models.embed.memory``)."""
    if memory is None:
        return head.logits(x)
    mixed = memory.mix(softmax(head.logits(x)), x)
    return np.asarray(np.log(np.maximum(mixed, EPS)), dtype=np.float32)


def head_probs(head: Head, x: np.ndarray, temperature: float,
               memory: Memory | None = None) -> np.ndarray:
    """The exported graph's output, in numpy (the parity reference)."""
    return softmax(scores(head, x, memory), temperature)


def export_head(head: Head, temperature: float, memory: Memory | None = None) -> bytes:
    """The head as one ONNX file: ``probs = softmax((embedding · Wᵀ + b) / T)``, or with a
    verdict memory ``softmax(log mix(softmax(embedding · Wᵀ + b), memory vote) / T)``."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ModelError(f"temperature must be positive and finite, got {temperature}")
    k, d = head.weight.shape
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(head.weight.T, dtype=np.float32), "wt"),
        numpy_helper.from_array(head.bias.astype(np.float32), "b"),
        numpy_helper.from_array(np.asarray(temperature, dtype=np.float32), "t"),
    ]
    nodes = [
        helper.make_node("MatMul", ["embedding", "wt"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
    ]
    if memory is None:
        nodes.append(helper.make_node("Div", ["logits", "t"], ["scaled"]))
    else:
        mix_nodes, mix_inits = memory_nodes(memory, "p_head", "mixed")
        inits += [*mix_inits, numpy_helper.from_array(np.array(EPS, dtype=np.float32), "eps")]
        nodes += [helper.make_node("Softmax", ["logits"], ["p_head"], axis=-1), *mix_nodes,
                  helper.make_node("Max", ["mixed", "eps"], ["mixed_pos"]),
                  helper.make_node("Log", ["mixed_pos"], ["log_mixed"]),
                  helper.make_node("Div", ["log_mixed", "t"], ["scaled"])]
    nodes.append(helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes, "tier2_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", k])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="distillery")
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def check_head_parity(data: bytes, head: Head, temperature: float, sample: np.ndarray,
                      tolerance: float = 1e-5, memory: Memory | None = None) -> float:
    """Largest |onnxruntime - numpy| probability on ``sample``; refuses past ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"embedding": sample.astype(np.float32)})[0]
    want = head_probs(head, sample, temperature, memory)
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise ModelError(f"head ONNX differs from numpy by {diff:.2e}; export refused")
    return diff
