"""Choosing features and classifier by cross-validation over the labelled patches only.

The probe may read raw bands, a network's features, or both, through a linear model or a random
forest. Which wins depends on the data and on how much unlabelled data the network saw, so the
default probe lets the labelled patches decide: folds are whole patches (pixels of one patch are
strongly correlated, so a pixel-level split would flatter every candidate), each candidate is
trained on the other folds and scored on the held-out one, and the confusion matrices of all
folds are summed before the score is taken. Evaluation patches never take part.

With a handful of patches one hard fold (a held-out patch unlike the others) can sink a
candidate's summed score, so :func:`choose` also asks the winner to beat the reference on most
folds, not on one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sarfuse.mapping.decision import decide, iou_offsets
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


@dataclass(frozen=True)
class CrossValidation:
    """Every candidate's mIoU over the summed confusion matrices of all folds, and per fold."""

    miou: dict[str, float]
    folds: dict[str, list[float]]


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
) -> CrossValidation:
    """Mean IoU (over classes present in the labels) of every candidate, by patch folds.

    ``x`` (P, C) holds every candidate's columns, ``y`` (P,) labels and ``groups`` (P,) patch ids.
    Needs two patches at least; with one, every candidate scores NaN and has no folds.
    """
    folds = patch_folds(groups, n_folds, seed)
    if len(folds) < 2:
        return CrossValidation({c.name: float("nan") for c in candidates}, {})
    out = CrossValidation({}, {})
    for cand in candidates:
        cms = []
        for clf, held in _fold_fits(cand, x, y, folds, fit, seed, max_pixels):
            proba = predict_pixels(clf, x[held][:, list(cand.columns)])  # (P, K)
            cms.append(confusion_matrix(proba.argmax(1), y[held], num_classes))
        out.miou[cand.name] = float(scores(torch.stack(cms).sum(0))["mIoU"])
        out.folds[cand.name] = [float(scores(cm)["mIoU"]) for cm in cms]
    return out


def check_decision(
    cand: Candidate,
    x: Tensor,
    y: Tensor,
    groups: Tensor,
    pool: Tensor,
    num_classes: int,
    target: int | None,
    fit: Fit,
    n_folds: int = 4,
    seed: int = 0,
    max_pixels: int = 50_000,
) -> tuple[Tensor, Tensor] | None:
    """Summed held-out confusion matrices of ``cand`` by patch folds, decided by arg-max and by
    the IoU offsets each fold's classifier chooses on the unlabelled pixels ``pool`` (P, C), as
    the probe does: whether the decision helps on labelled patches that none of the fold's
    fitting or offsets saw. None with fewer than two labelled patches."""
    folds = patch_folds(groups, n_folds, seed)
    if len(folds) < 2:
        return None
    cols = list(cand.columns)
    plain = torch.zeros(num_classes, num_classes, dtype=torch.long)
    moved = plain.clone()
    for clf, held in _fold_fits(cand, x, y, folds, fit, seed, max_pixels):
        offsets = iou_offsets(predict_pixels(clf, pool[:, cols]).double(), target)
        proba = predict_pixels(clf, x[held][:, cols])
        plain += confusion_matrix(proba.argmax(1), y[held], num_classes)
        moved += confusion_matrix(decide(proba, offsets), y[held], num_classes)
    return plain, moved


def _fold_fits(
    cand: Candidate, x: Tensor, y: Tensor, folds: list[Tensor], fit: Fit, seed: int, limit: int
) -> Iterator[tuple[object, Tensor]]:
    """For each fold: ``cand``'s classifier fitted on (at most ``limit`` pixels of) the other
    folds, and the held-out fold's pixel mask."""
    cols = list(cand.columns)
    for k, held in enumerate(folds):
        train = _subsample(~held, limit, seed + k)
        yield fit(cand.classifier, x[train][:, cols], y[train], None), held


def fold_wins(folds: dict[str, list[float]], name: str, ref: str) -> int:
    """On how many folds candidate ``name`` scored above ``ref``."""
    return sum(a > b for a, b in zip(folds[name], folds[ref], strict=True))


def choose(
    candidates: Sequence[Candidate],
    cv: CrossValidation,
    margin: float = 0.0,
    most_folds: bool = True,
) -> Candidate:
    """The best-scoring candidate, if it beats the first (the reference) by more than ``margin``
    and, with ``most_folds``, on more than half of the folds as well.

    With few labelled patches the fold scores are noisy, and picking the maximum of noisy scores
    favours whichever candidate got lucky; the margin keeps the reference unless another
    candidate wins clearly, and the fold count keeps it when the whole lead comes from one fold
    where the reference failed. Ties and NaN scores go to the earliest candidate.
    """
    values = np.array([cv.miou[c.name] for c in candidates], dtype=np.float64)
    if np.all(np.isnan(values)):
        return candidates[0]
    best, ref = candidates[int(np.nanargmax(values))], candidates[0]
    if np.isnan(values[0]):
        return best
    if not cv.miou[best.name] > cv.miou[ref.name] + margin:
        return ref
    if most_folds and cv.folds:
        wins = fold_wins(cv.folds, best.name, ref.name)
        return best if 2 * wins > len(cv.folds[ref.name]) else ref
    return best


def describe(selection: dict) -> str:
    """What ``auto`` chose and why, for the terminal (``selection`` as in metrics.json)."""
    cv, folds, chosen = (
        selection.get("cv_miou", {}),
        selection.get("cv_fold_miou", {}),
        selection["chosen"],
    )
    if not cv:
        return f"features/classifier: {chosen}"
    ref = next(iter(cv))
    rule = f"by {selection.get('margin', 0.0):.2f} mIoU"
    rule += " and on most folds" if selection.get("most_folds", False) else ""
    lines = [f"features/classifier: {chosen}, chosen by cross-validation over the labelled "
             f"patches ({ref} is kept unless another beats it {rule})"]  # fmt: skip
    for name, score in sorted(cv.items(), key=lambda kv: -np.nan_to_num(kv[1], nan=-1.0)):
        mark = "*" if name == chosen else " "
        line = f"  {mark} {name:<22} CV mIoU {score:.4f}"
        if folds and name != ref:
            line += f"  beats {ref} on {fold_wins(folds, name, ref)} of {len(folds[ref])} folds"
        lines.append(line)
    return "\n".join(lines)
