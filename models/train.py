"""Training the student with torch: sparse embedding gradients, class weights, early stopping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from distillery.errors import ConfigError
from models.featurize import Featurizer
from models.network import StudentNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    dim: int = 64
    epochs: int = 30
    batch_size: int = 128
    lr_embedding: float = 0.1
    lr_linear: float = 0.01
    patience: int = 2
    min_share: float = 0.0  # classes under this share of the data get their weight raised
    seed: int = 0
    threads: int = 2


@dataclass
class Trained:
    net: StudentNet
    labels: list[str]
    epochs_run: int
    best_epoch: int
    seconds: float


def label_order(labels: list[str], parent: list[str] | None) -> list[str]:
    """The parent's labels in their order, then new labels sorted: a label set only grows."""
    known = list(parent or [])
    return known + sorted(set(labels) - set(known))


def class_weights(y: np.ndarray, n_labels: int, min_share: float) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    floor = min_share if min_share > 0 else 0.5 / max(n_labels, 1)
    weights = np.where((counts > 0) & (share < floor), floor / np.maximum(share, 1e-12), 1.0)
    return torch.tensor(np.minimum(weights, 20.0), dtype=torch.float32)


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


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
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    names = label_order(labels + holdout_labels, parent_labels)
    index = {name: i for i, name in enumerate(names)}
    ids, mask = (torch.from_numpy(a) for a in featurizer.transform(texts))
    y = torch.tensor([index[x] for x in labels])
    h_ids, h_mask = (torch.from_numpy(a) for a in featurizer.transform(holdout_texts or texts[:1]))
    h_y = torch.tensor([index[x] for x in (holdout_labels or labels[:1])])
    net = StudentNet(featurizer.config.buckets, config.dim, len(names))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y.numpy(), len(names), config.min_share))
    sparse_opt = torch.optim.SparseAdam(list(net.embedding.parameters()), lr=config.lr_embedding)
    dense_opt = torch.optim.Adam(net.linear.parameters(), lr=config.lr_linear)
    best_loss, best_epoch, best_state, epoch = float("inf"), 0, None, 0
    for epoch in range(1, config.epochs + 1):
        net.train()
        for batch in _batches(len(texts), config.batch_size, rng):
            b = torch.from_numpy(batch)
            sparse_opt.zero_grad()
            dense_opt.zero_grad()
            loss = loss_fn(net(ids[b], mask[b]), y[b])
            loss.backward()
            sparse_opt.step()
            dense_opt.step()
        net.eval()
        with torch.no_grad():
            h_loss = float(nn.functional.cross_entropy(net(h_ids, h_mask), h_y))
        if on_epoch:
            on_epoch(epoch, h_loss)
        if h_loss < best_loss - 1e-4:
            best_loss, best_epoch = h_loss, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return Trained(net, names, epoch, best_epoch, time.perf_counter() - started)


def logits_of(net: StudentNet, featurizer: Featurizer, texts: list[str],
              batch: int = 2048) -> np.ndarray:
    """Torch eager logits, for calibration and for the parity check."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            ids, mask = featurizer.transform(texts[i:i + batch])
            out.append(net(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.linear.out_features), np.float32)
