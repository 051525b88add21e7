"""Self-training on sparse pseudo labels: the mapping step of Chen & Bruzzone's method.

The classifier is trained on the labelled pixels plus down-weighted pseudo labels: first those
given by the scheme's spectral-index rules, then, round after round, the most confident
predictions of each class on unlabelled pixels (a prediction that contradicts an index rule is
dropped). Rounds stop when the pseudo labels stop changing. Labelled pixels always win: pseudo
labels are only drawn on pixels outside the labelled patches, and evaluation patches never
enter (the caller gives only pixels of patches that are neither labelled nor evaluated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.mapping.probe import predict_pixels
from sarfuse.mapping.pseudo import balanced_sample, confident_labels, merge


@dataclass
class SelfTrainConfig:
    rounds: int = 3  # rounds of predicting and retraining after the first fit
    fraction: float = 0.05  # pseudo labels per class, as a fraction of the candidate pixels
    weight: float = 0.5  # weight of a pseudo-labelled pixel (a labelled one weighs 1)
    min_confidence: float = 0.9  # a prediction below this probability never becomes a label
    tol: float = 0.02  # stop when fewer than this fraction of the pseudo labels changed


@dataclass
class SelfTrainResult:
    classifier: object
    rounds: list[dict] = field(default_factory=list)  # per round: counts, changes, accuracy
    pseudo: list[np.ndarray] = field(default_factory=list)  # pseudo labels (M,) of every round


def _accuracy(pseudo: np.ndarray, truth: np.ndarray | None) -> float | None:
    """Share of pseudo labels that agree with the true labels, where both exist (report only)."""
    if truth is None:
        return None
    both = (pseudo != IGNORE_INDEX) & (truth != IGNORE_INDEX)
    return float((pseudo[both] == truth[both]).mean()) if both.any() else None


def _changed(old: np.ndarray, new: np.ndarray) -> float:
    """Share of the pixels labelled in either set whose pseudo label differs."""
    either = (old != IGNORE_INDEX) | (new != IGNORE_INDEX)
    return float((old[either] != new[either]).mean()) if either.any() else 0.0


def self_train(
    fit: Callable[[Tensor, Tensor, Tensor | None], object],
    x_labelled: Tensor,
    y_labelled: Tensor,
    x_pool: Tensor,
    rule_pseudo: np.ndarray,
    cfg: SelfTrainConfig,
    seed: int = 0,
    truth: np.ndarray | None = None,
) -> SelfTrainResult:
    """Train with ``fit(x, y, weights)`` on labelled pixels and pseudo labels of ``x_pool``.

    ``x_labelled`` (L, C) / ``y_labelled`` (L,); ``x_pool`` (M, C) candidate unlabelled pixels;
    ``rule_pseudo`` (M,) their index-rule classes (IGNORE_INDEX = none). ``truth`` (M,), if
    given, is only used to report the pseudo labels' accuracy per round, never for training.
    """
    rng = np.random.default_rng(seed)
    per_class = max(1, int(cfg.fraction * len(x_pool)))
    rules = balanced_sample(rule_pseudo, per_class, rng)
    pseudo = rules
    result = SelfTrainResult(classifier=None)
    for round_ in range(cfg.rounds + 1):
        keep = torch.from_numpy(pseudo != IGNORE_INDEX)
        x = torch.cat([x_labelled, x_pool[keep]])
        y = torch.cat([y_labelled, torch.from_numpy(pseudo[keep.numpy()])])
        w = torch.cat([torch.ones(len(y_labelled)), torch.full((int(keep.sum()),), cfg.weight)])
        result.classifier = fit(x, y, w)
        result.pseudo.append(pseudo)
        info = {"round": round_, "pseudo_labels": int(keep.sum())}
        info["accuracy"] = _accuracy(pseudo, truth)
        result.rounds.append(info)
        if round_ == cfg.rounds or len(x_pool) == 0:
            break
        proba = predict_pixels(result.classifier, x_pool).numpy()  # (M, K)
        confident = confident_labels(proba, per_class, rng, cfg.min_confidence)
        new = merge(rules, confident)
        changed = _changed(pseudo, new)
        info["changed_next"] = changed
        if changed < cfg.tol:
            break
        pseudo = new
    return result
