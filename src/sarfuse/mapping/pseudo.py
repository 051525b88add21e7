"""Sparse pseudo labels: from a scheme's spectral-index rules, and from a classifier's confidence.

Both are pure functions on pixel arrays so they test on a handful of numbers. A pseudo label is
only given where it is confident: a pixel that satisfies the rules of two classes gets none, and
only a small fraction of the candidate pixels is kept, the same number per class (balanced), drawn
at random over all candidates so that it spreads over the scene.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sarfuse.data.schemes import IGNORE_INDEX, ClassScheme


def rule_labels(indices: np.ndarray, names: Sequence[str], scheme: ClassScheme) -> np.ndarray:
    """Class of every pixel by the scheme's index rules, ``IGNORE_INDEX`` where none or several.

    ``indices`` is (P, K) raw index values named ``names``. A class takes part when at least one
    of its rules can be evaluated; then all its evaluable rules must hold. NaN never matches.
    """
    values = np.asarray(indices, dtype=np.float64)
    column = {name: i for i, name in enumerate(names)}
    hits = np.zeros((len(values), scheme.num_classes), dtype=bool)
    for k, cls in enumerate(scheme.classes):
        usable = [r for r in cls.pseudo if r.index in column]
        if not usable:
            continue
        ok = np.ones(len(values), dtype=bool)
        for rule in usable:
            x = values[:, column[rule.index]]
            if rule.above is not None:
                ok &= x > rule.above  # NaN compares False
            if rule.below is not None:
                ok &= x < rule.below
        hits[:, k] = ok
    single = hits.sum(1) == 1
    return np.where(single, hits.argmax(1), IGNORE_INDEX).astype(np.int64)


def balanced_sample(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, priority: np.ndarray | None = None
) -> np.ndarray:
    """Keep at most ``per_class`` labelled pixels of each class (the rest become ignore).

    Without ``priority`` the kept pixels are drawn at random; with it (P,) the highest are kept
    (a classifier's confidence), ties broken at random.
    """
    labels = np.asarray(labels)
    out = np.full(labels.shape, IGNORE_INDEX, dtype=np.int64)
    noise = rng.random(len(labels))
    for c in np.unique(labels[labels != IGNORE_INDEX]):
        members = np.flatnonzero(labels == c)
        if priority is None:
            order = np.argsort(noise[members])
        else:  # highest priority first, ties in random order
            order = np.lexsort((noise[members], -priority[members]))
        out[members[order[:per_class]]] = c
    return out


def confident_labels(
    proba: np.ndarray, per_class: int, rng: np.random.Generator, min_confidence: float = 0.0
) -> np.ndarray:
    """The ``per_class`` most confident predictions of each class from ``proba`` (P, K)."""
    proba = np.asarray(proba)
    predicted = proba.argmax(1)
    confidence = proba.max(1)
    predicted = np.where(confidence >= min_confidence, predicted, IGNORE_INDEX)
    return balanced_sample(predicted, per_class, rng, priority=confidence)


def merge(rules: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Union of two pseudo-label sets; a pixel on which they disagree gets none."""
    rules, predicted = np.asarray(rules), np.asarray(predicted)
    both = (rules != IGNORE_INDEX) & (predicted != IGNORE_INDEX)
    out = np.where(rules != IGNORE_INDEX, rules, predicted)
    return np.where(both & (rules != predicted), IGNORE_INDEX, out)
