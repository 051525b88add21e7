"""Spatially blocked splits: training and evaluation patches from separate blocks of the scene.

Neighbouring patches share context (the same field, the same flood, pixels a network sees through
its receptive field), so a random split scores a probe on patches next to the ones it trained on
and flatters it. ``blocks`` cuts every scene into square blocks of ``block`` pixels, gives a
random ``train_fraction`` of the blocks to training and the rest to evaluation, and drops every
evaluation patch that lies closer than ``buffer`` pixels to a training block. Within the
training blocks the N labelled patches are drawn as in the random split (stratified, nested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.mapping.splits import Split, _classes_per_patch, _stratified_order, few_label_split

SplitMode = Literal["random", "blocks"]
# (scene index, row, col, height, width) of a patch in its scene, in pixels
PatchBox = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class BlockSpec:
    """How ``blocks`` cuts the scenes: block side and buffer in pixels, the training share."""

    block: int
    buffer: int
    train_fraction: float = 0.5


def window_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev gap in pixels between boxes ``a`` (A, 4) and ``b`` (B, 4) -> (A, B).

    Boxes are (row, col, height, width); touching boxes have gap 0, overlapping ones too.
    """
    a, b = a[:, None, :], b[None, :, :]
    rows = np.maximum(
        0, np.maximum(b[..., 0] - (a[..., 0] + a[..., 2]), a[..., 0] - (b[..., 0] + b[..., 2]))
    )
    cols = np.maximum(
        0, np.maximum(b[..., 1] - (a[..., 1] + a[..., 3]), a[..., 1] - (b[..., 1] + b[..., 3]))
    )
    return np.maximum(rows, cols)


def training_side(boxes: Sequence[PatchBox], spec: BlockSpec, seed: int) -> np.ndarray:
    """True for patches in a training block: a seeded random share of each scene's blocks."""
    blocks = [(s, r // spec.block, c // spec.block) for s, r, c, _, _ in boxes]
    unique = sorted(set(blocks))
    order = np.random.default_rng([seed, 3]).permutation(len(unique))
    n_train = max(1, int(round(spec.train_fraction * len(unique))))
    chosen = {unique[j] for j in order[:n_train]}
    return np.array([b in chosen for b in blocks], dtype=bool)


def _outside_buffer(boxes: Sequence[PatchBox], train_side: np.ndarray, buffer: int) -> np.ndarray:
    """True for evaluation-side patches at least ``buffer`` px from every training-side patch."""
    arr = np.array(boxes, dtype=np.int64).reshape(-1, 5)
    keep = ~train_side
    for scene in np.unique(arr[:, 0]):
        here = arr[:, 0] == scene
        evals, trains = np.flatnonzero(here & ~train_side), np.flatnonzero(here & train_side)
        if len(evals) and len(trains):
            gaps = window_gaps(arr[evals, 1:], arr[trains, 1:]).min(axis=1)
            keep[evals] = gaps >= buffer
    return keep


def block_split(
    patch_labels: Sequence[np.ndarray],
    boxes: Sequence[PatchBox],
    n_labelled: int,
    seed: int,
    spec: BlockSpec,
    n_eval: int | None = None,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Split:
    """Training patches from training blocks, evaluation patches from the others, buffered."""
    if spec.block < 1 or spec.buffer < 0 or not 0 < spec.train_fraction < 1:
        raise SarfuseError(None, f"blocks split needs block >= 1 px, buffer >= 0, got {spec}")
    present = _classes_per_patch(patch_labels, num_classes, ignore_index)
    train_side = training_side(boxes, spec, seed)
    eval_ok = _outside_buffer(boxes, train_side, spec.buffer)
    pool = [i for i, c in enumerate(present) if c and train_side[i]]
    candidates = [i for i, c in enumerate(present) if c and eval_ok[i]]
    if n_labelled < 1 or n_labelled > len(pool):
        raise SarfuseError(
            None, f"asked for {n_labelled} labelled patches but the training blocks hold "
            f"{len(pool)} labelled ones (use --split-mode random or a smaller --block-size)",
        )  # fmt: skip
    if not candidates or (n_eval is not None and n_eval > len(candidates)):
        raise SarfuseError(
            None, f"{len(candidates)} labelled patches lie outside the {spec.buffer} px buffer "
            f"around the training blocks, {n_eval or 1} needed (use a smaller --buffer)",
        )  # fmt: skip
    train = _stratified_order(pool, present, np.random.default_rng([seed, 2]))[:n_labelled]
    if n_eval is not None:
        pick = np.random.default_rng([seed, 1]).permutation(len(candidates))[:n_eval]
        candidates = sorted(candidates[i] for i in pick)
    return Split(train=train, eval=candidates)


def draw_split(
    patch_labels: Sequence[np.ndarray],
    boxes: Sequence[PatchBox],
    n_labelled: int,
    seed: int,
    mode: SplitMode,
    spec: BlockSpec,
    n_eval: int | None = None,
    num_classes: int | None = None,
) -> Split:
    """A ``random`` (:func:`few_label_split`) or ``blocks`` split of the patches."""
    if mode == "random":
        return few_label_split(patch_labels, n_labelled, seed, n_eval, num_classes)
    if mode == "blocks":
        return block_split(patch_labels, boxes, n_labelled, seed, spec, n_eval, num_classes)
    raise SarfuseError(None, f"--split-mode must be random or blocks, got {mode!r}")
