"""Training the student with torch: row-sparse embedding updates, class weights, early stop.

Each step gathers only the embedding rows its batch touches (``torch.unique`` over the ids),
pools them with ``F.embedding_bag`` (mean, padding excluded), and updates those rows alone
with a lazy Adagrad; the linear layer uses Adam. Measured on CLINC150 (15k texts, 2^18 × 64):
torch's ``SparseAdam`` is ~3× and its sparse ``Adagrad`` ~20× slower per epoch, and sparse
SGD needs 3× the epochs for the same loss; the lazy Adagrad reaches 0.92 in two epochs of
under a second each. Classes under ``min_share`` of the data get their loss weight raised;
early stopping watches the holdout's loss. Seeded: ``torch.manual_seed`` and a numpy
``Generator``; the same data, seed and thread count give the same weights.

One torch thread by default. The trainer shares two cores with the broker and the stream
workers, and torch's OpenMP pool waits for *all* its threads at every parallel op: with
the cores busy, two threads turned a one-second training of 620 tickets into 10 s (59 s on
the process's first training), against 1.5 s (5.3 s) with one thread, measured with six
busy processes beside it (``distillery`` demo refreshes took 19–46 s under load for the
same reason). Unloaded, two threads gain nothing here (0.77 s against 0.82 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from distillery.errors import ConfigError
from models.featurize import Featurizer
from models.network import StudentNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    dim: int = 64
    epochs: int = 10
    batch_size: int = 256
    lr_embedding: float = 0.5  # lazy Adagrad
    lr_linear: float = 0.01  # Adam
    patience: int = 1  # epochs without a relative improvement of min_delta before stopping
    min_delta: float = 0.01
    min_share: float = 0.0  # classes under this share get a higher weight; 0 = 0.5 / labels
    max_weight: float = 20.0
    seed: int = 0
    threads: int = 1  # see the module docstring: more threads stall under load


@dataclass
class Trained:
    net: StudentNet
    labels: list[str]
    epochs_run: int
    best_epoch: int
    seconds: float
    holdout_loss: float


def label_order(labels: list[str], parent: list[str] | None) -> list[str]:
    """The parent's labels in their order, then new labels sorted: a label set only grows."""
    known = list(dict.fromkeys(parent or []))
    return known + sorted(set(labels) - set(known))


def class_weights(y: np.ndarray, n_labels: int, min_share: float,
                  max_weight: float = 20.0) -> torch.Tensor:
    """1 for most classes; share-floor / share (capped) for classes under the floor."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    floor = min_share if min_share > 0 else 0.5 / max(n_labels, 1)
    weights = np.where((counts > 0) & (share < floor), floor / np.maximum(share, 1e-12), 1.0)
    return torch.tensor(np.minimum(weights, max_weight), dtype=torch.float32)


class LazyAdagrad:
    """Adagrad on the rows a step touched (the gradient is row-sparse); row 0 stays zero."""

    def __init__(self, weight: torch.Tensor, lr: float, eps: float = 1e-10) -> None:
        self.weight = weight
        self.sum_sq = torch.zeros_like(weight)
        self.lr = lr
        self.eps = eps

    @torch.no_grad()
    def step(self, rows: torch.Tensor, values: torch.Tensor, grad: torch.Tensor) -> None:
        acc = self.sum_sq[rows] + grad * grad
        self.sum_sq[rows] = acc
        self.weight[rows] = values - self.lr * grad / (acc.sqrt() + self.eps)
        self.weight[0] = 0.0


class _Loop:
    """One training run's state: the tensors, the optimisers, the loss."""

    def __init__(self, net: StudentNet, ids: torch.Tensor, y: torch.Tensor,
                 config: TrainConfig, weights: torch.Tensor) -> None:
        self.net, self.ids, self.y, self.config = net, ids, y, config
        self.weights = weights
        self.sparse = LazyAdagrad(net.embedding.weight.data, config.lr_embedding)
        self.dense = torch.optim.Adam(net.linear.parameters(), lr=config.lr_linear)

    def step(self, batch: torch.Tensor) -> None:
        rows, inverse = torch.unique(self.ids[batch], return_inverse=True)
        values = self.net.embedding.weight.data[rows].requires_grad_(True)
        padding = 0 if int(rows[0]) == 0 else None
        pooled = F.embedding_bag(inverse, values, mode="mean", padding_idx=padding)
        self.dense.zero_grad()
        loss = F.cross_entropy(self.net.linear(pooled), self.y[batch], weight=self.weights)
        loss.backward()
        self.dense.step()
        assert values.grad is not None
        self.sparse.step(rows, values.detach(), values.grad)

    def epoch(self, rng: np.random.Generator) -> None:
        order = torch.from_numpy(rng.permutation(len(self.y)))
        for start in range(0, len(order), self.config.batch_size):
            self.step(order[start:start + self.config.batch_size])


def _encode(featurizer: Featurizer, texts: list[str], labels: list[str],
            index: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, _ = featurizer.transform(texts)
    return torch.from_numpy(ids), torch.tensor([index[x] for x in labels], dtype=torch.int64)


def train_net(
    featurizer: Featurizer,
    texts: list[str],
    labels: list[str],
    holdout_texts: list[str],
    holdout_labels: list[str],
    config: TrainConfig,
    parent_labels: list[str] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Trained:
    """Train on (texts, labels); early-stop on the holdout's loss. Seeded and reproducible."""
    if len(texts) != len(labels) or not texts:
        raise ConfigError("training needs as many labels as texts, and at least one")
    if len(holdout_texts) != len(holdout_labels):
        raise ConfigError("the holdout needs as many labels as texts")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    names = label_order(labels + holdout_labels, parent_labels)
    index = {name: i for i, name in enumerate(names)}
    ids, y = _encode(featurizer, texts, labels, index)
    h_ids, h_y = _encode(featurizer, holdout_texts or texts[:1],
                         holdout_labels or labels[:1], index)
    net = StudentNet(featurizer.config.buckets, config.dim, len(names))
    weights = class_weights(y.numpy(), len(names), config.min_share, config.max_weight)
    loop = _Loop(net, ids, y, config, weights)
    best_loss, best_epoch, best_state, epoch = float("inf"), 0, None, 0
    for epoch in range(1, config.epochs + 1):
        loop.epoch(rng)
        with torch.no_grad():
            h_loss = float(F.cross_entropy(net(h_ids), h_y))
        log.debug("epoch %s: holdout loss %.4f", epoch, h_loss)
        if on_epoch:
            on_epoch(epoch, h_loss)
        if h_loss < best_loss * (1.0 - config.min_delta):
            best_loss, best_epoch = h_loss, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    _zero_unseen_rows(net, ids)
    net.eval()
    return Trained(net, names, epoch, best_epoch, time.perf_counter() - started, best_loss)


def _zero_unseen_rows(net: StudentNet, ids: torch.Tensor) -> None:
    """Rows no training item touched keep their random start: an n-gram first seen in
    serving would add that noise. Zeroed, it adds nothing (and the export prunes zero rows:
    a model file holds only what training learnt)."""
    with torch.no_grad():
        seen = torch.zeros(net.embedding.weight.shape[0], dtype=torch.bool)
        seen[torch.unique(ids)] = True
        net.embedding.weight[~seen] = 0.0


def logits_of(net: StudentNet, featurizer: Featurizer, texts: list[str],
              batch: int = 4096) -> np.ndarray:
    """Torch eager logits, for calibration and evaluation."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            ids, _ = featurizer.transform(texts[i:i + batch])
            out.append(net(torch.from_numpy(ids)).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.n_labels), np.float32)
