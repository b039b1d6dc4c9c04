"""Slice evaluation: per-label precision/recall/F1, critical recall, metadata slices.

``slice_report`` returns the JSON shape of a model announcement's ``metrics``:
``accuracy``, ``macro_f1``, ``slices`` (per label: ``precision``, ``recall``, ``f1``,
``support``) and ``critical_recall`` (per critical label), plus ``confusion`` and
``metadata_slices``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NotRequired, TypedDict

import numpy as np


class SliceFigures(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class Confusion(TypedDict):
    labels: list[str]
    matrix: list[list[int]]


class MetadataSlice(TypedDict):
    accuracy: float
    support: int


class SliceReport(TypedDict):
    """The announcement's ``metrics`` shape for one set of predictions."""

    n: int
    accuracy: float
    macro_f1: float
    slices: dict[str, SliceFigures]
    critical_recall: dict[str, float]
    confusion: Confusion
    coverage: NotRequired[float]
    accepted_accuracy: NotRequired[float]
    metadata_slices: NotRequired[dict[str, dict[str, MetadataSlice]]]


def _prf(true: np.ndarray, pred: np.ndarray, label: str) -> SliceFigures:
    tp = int(np.sum((pred == label) & (true == label)))
    predicted = int(np.sum(pred == label))
    support = int(np.sum(true == label))
    precision = tp / predicted if predicted else 0.0
    recall = tp / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SliceFigures(precision=precision, recall=recall, f1=f1, support=support)


def slice_report(
    y_true: list[str],
    y_pred: list[str],
    labels: list[str] | None = None,
    critical: list[str] | None = None,
    metadata: list[dict[str, str]] | None = None,
    metadata_fields: list[str] | None = None,
    accepted: list[bool] | None = None,
) -> SliceReport:
    """Figures of ``y_pred`` against ``y_true``, in the announcement's ``metrics`` shape.

    ``accepted`` (where the student would decide alone) adds ``coverage`` (their share) and
    ``accepted_accuracy`` (the accuracy on them, i.e. the precision of accepting).
    """
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    true = np.asarray(y_true, dtype=object)
    pred = np.asarray(y_pred, dtype=object)
    names = list(labels) if labels else sorted(set(y_true) | set(y_pred))
    names += sorted((set(y_true) | set(y_pred)) - set(names))
    slices = {name: _prf(true, pred, name) for name in names}
    present = [s for s in slices.values() if s["support"] > 0]
    report = SliceReport(
        n=len(y_true),
        accuracy=float(np.mean(true == pred)) if len(true) else 0.0,
        macro_f1=float(np.mean([s["f1"] for s in present])) if present else 0.0,
        slices=slices,
        critical_recall={c: slices[c]["recall"] for c in (critical or []) if c in slices},
        confusion=_confusion(true, pred, names),
    )
    if accepted is not None:
        mask = np.asarray(accepted, dtype=bool)
        report["coverage"] = float(mask.mean()) if len(mask) else 0.0
        report["accepted_accuracy"] = (float(np.mean(true[mask] == pred[mask]))
                                       if mask.any() else 0.0)
    if metadata and metadata_fields:
        report["metadata_slices"] = _metadata_slices(true, pred, metadata, metadata_fields)
    return report


def _confusion(true: np.ndarray, pred: np.ndarray, names: list[str]) -> Confusion:
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    rows = np.fromiter((index[t] for t in true), dtype=np.int64, count=len(true))
    cols = np.fromiter((index[p] for p in pred), dtype=np.int64, count=len(pred))
    np.add.at(matrix, (rows, cols), 1)
    return Confusion(labels=names, matrix=matrix.tolist())


def _metadata_slices(true: np.ndarray, pred: np.ndarray, metadata: list[dict[str, str]],
                     fields: list[str]) -> dict[str, dict[str, MetadataSlice]]:
    out: dict[str, dict[str, MetadataSlice]] = {}
    for field in fields:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, meta in enumerate(metadata):
            if field in meta:
                groups[str(meta[field])].append(i)
        out[field] = {
            value: MetadataSlice(accuracy=float(np.mean(true[idx] == pred[idx])),
                                 support=len(idx))
            for value, idx in sorted(groups.items())
        }
    return out
