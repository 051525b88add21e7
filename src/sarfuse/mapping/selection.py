"""Choosing features and classifier by cross-validation over the labelled patches only.

The probe may read raw bands, a network's features, or both, through a linear model or a random
forest. Which wins depends on the data and on how much unlabelled data the network saw, so the
default probe lets the labelled patches decide: folds are whole patches (pixels of one patch are
strongly correlated, so a pixel-level split would flatter every candidate), each candidate is
trained on the other folds and scored on the held-out one, and the confusion matrices of all
folds are summed before the score is taken. Evaluation patches never take part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sarfuse.mapping.metrics import confusion_matrix, scores
from sarfuse.mapping.probe import predict_pixels

Fit = Callable[[str, Tensor, Tensor, Tensor | None], object]  # (classifier, x, y, weights)


@dataclass(frozen=True)
class Candidate:
    """A probe setup: feature kind, the columns it reads, and the classifier."""

    features: str
    columns: tuple[int, ...]
    classifier: str

    @property
    def name(self) -> str:
        return f"{self.features}/{self.classifier}"


def patch_folds(groups: Tensor, n_folds: int, seed: int) -> list[Tensor]:
    """Pixel masks of ``n_folds`` folds of whole patches (``groups`` (P,) = patch id per pixel)."""
    ids = torch.unique(groups)
    order = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
    return [torch.isin(groups, part) for part in order.chunk(min(n_folds, len(ids)))]


def _subsample(mask: Tensor, limit: int, seed: int) -> Tensor:
    """Indices of at most ``limit`` True entries of ``mask``, drawn uniformly."""
    where = torch.nonzero(mask)[:, 0]
    if len(where) <= limit:
        return where
    keep = torch.randperm(len(where), generator=torch.Generator().manual_seed(seed))[:limit]
    return where[keep]


def cross_validate(
    candidates: Sequence[Candidate],
    x: Tensor,
    y: Tensor,
    groups: Tensor,
    num_classes: int,
    fit: Fit,
    n_folds: int = 4,
    seed: int = 0,
    max_pixels: int = 50_000,
) -> dict[str, float]:
    """Mean IoU (over classes present in the labels) of every candidate, by patch folds.

    ``x`` (P, C) holds every candidate's columns, ``y`` (P,) labels and ``groups`` (P,) patch ids.
    Needs two patches at least; with one, every candidate scores NaN.
    """
    folds = patch_folds(groups, n_folds, seed)
    if len(folds) < 2:
        return {c.name: float("nan") for c in candidates}
    out = {}
    for cand in candidates:
        cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        cols = list(cand.columns)
        for k, held in enumerate(folds):
            train = _subsample(~held, max_pixels, seed + k)
            clf = fit(cand.classifier, x[train][:, cols], y[train], None)
            proba = predict_pixels(clf, x[held][:, cols])  # (P, K)
            cm += confusion_matrix(proba.argmax(1), y[held], num_classes)
        out[cand.name] = float(scores(cm)["mIoU"])
    return out


def choose(candidates: Sequence[Candidate], cv: dict[str, float], margin: float = 0.0) -> Candidate:
    """The best-scoring candidate, if it beats the first (the reference) by more than ``margin``.

    With few labelled patches the fold scores are noisy, and picking the maximum of noisy scores
    favours whichever candidate got lucky; the margin keeps the reference unless another
    candidate wins clearly. Ties and NaN scores go to the earliest candidate.
    """
    values = np.array([cv[c.name] for c in candidates], dtype=np.float64)
    if np.all(np.isnan(values)):
        return candidates[0]
    best = int(np.nanargmax(values))
    if np.isnan(values[0]) or values[best] > values[0] + margin:
        return candidates[best]
    return candidates[0]
