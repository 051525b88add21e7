"""Few-label splits: which N patches carry labels for the probe, and which patches evaluate it.

Patches without a single labelled pixel are never chosen. For a given seed the training patches
are the first N of one fixed ordering, so splits are nested (the 10-patch set is inside the
50-patch set). The ordering is stratified: it first takes patches that bring a class not yet
covered, rarest class first, so that even N = 10 sees several classes; then the rest at random.

Evaluation: with ``n_eval`` set, a fixed held-out set of ``n_eval`` labelled patches is drawn
from the seed before and independently of the training draw, so every N (and every method) is
scored on exactly the same patches. With ``n_eval=None`` every labelled patch not used for
training is evaluated (the most data for one N, but the set then shrinks as N grows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_write_text


@dataclass(frozen=True)
class Split:
    """Indices into the list of patches: ``train`` carry labels for the probe, ``eval`` score it."""

    train: list[int]
    eval: list[int]


def _classes_per_patch(
    patch_labels: Sequence[np.ndarray], num_classes: int | None, ignore_index: int
) -> list[set[int]]:
    present = []
    for i, lab in enumerate(patch_labels):
        values = np.unique(np.asarray(lab))
        values = values[values != ignore_index]
        bad = values[(values < 0) | (values >= (num_classes or np.inf))]
        if bad.size:
            raise SarfuseError(None, f"label patch {i} holds class {bad[0]} outside the scheme")
        present.append({int(v) for v in values})
    return present


def _stratified_order(
    pool: list[int], present: list[set[int]], rng: np.random.Generator
) -> list[int]:
    """All of ``pool`` ordered: class-covering patches first (rarest class first), then random."""
    remaining = [pool[i] for i in rng.permutation(len(pool))]
    counts: dict[int, int] = {}
    for p in pool:
        for c in present[p]:
            counts[c] = counts.get(c, 0) + 1
    order: list[int] = []
    uncovered = set(counts)
    while uncovered:
        rarest = min(uncovered, key=lambda c: (counts[c], c))
        pick = next(p for p in remaining if rarest in present[p])  # first in random order
        remaining.remove(pick)
        order.append(pick)
        uncovered -= present[pick]
    return order + remaining


def few_label_split(
    patch_labels: Sequence[np.ndarray],
    n_labelled: int,
    seed: int,
    n_eval: int | None = None,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Split:
    """Draw ``n_labelled`` training patches and the evaluation patches (see the module doc).

    ``patch_labels`` holds one ``(H, W)`` label array per patch (``ignore_index`` = unlabelled);
    ``num_classes``, when given, checks that labels lie in ``0..num_classes-1``.
    """
    present = _classes_per_patch(patch_labels, num_classes, ignore_index)
    labelled = [i for i, classes in enumerate(present) if classes]
    if n_labelled < 1:
        raise SarfuseError(None, f"the number of labelled patches must be >= 1, got {n_labelled}")
    if not labelled:
        raise SarfuseError(None, "no patch has a labelled pixel (every label is nodata or ignored)")
    if n_eval is not None and not 1 <= n_eval < len(labelled):
        raise SarfuseError(
            None, f"cannot hold out {n_eval} evaluation patches from {len(labelled)} labelled ones"
        )
    held_out: list[int] = []
    if n_eval is not None:
        draw = np.random.default_rng([seed, 1]).permutation(len(labelled))[:n_eval]
        held_out = sorted(labelled[i] for i in draw)
    pool = sorted(set(labelled) - set(held_out))
    spare = 0 if n_eval is not None else 1  # leave one patch to evaluate on
    if n_labelled > len(pool) - spare:
        raise SarfuseError(
            None,
            f"asked for {n_labelled} labelled patches but only {len(pool) - spare} are available "
            f"({len(labelled)} patches have labels, {len(held_out) or spare} kept for evaluation)",
        )
    order = _stratified_order(pool, present, np.random.default_rng([seed, 2]))
    train = order[:n_labelled]
    evaluate = held_out if n_eval is not None else sorted(set(pool) - set(train))
    return Split(train=train, eval=evaluate)


PatchKey = tuple[str, tuple[int, int, int, int]]  # (file, (row, col, height, width))


def save_split(
    path: str | Path,
    split: Split,
    keys: Sequence[PatchKey] | None = None,
    info: dict | None = None,
) -> Path:
    """Write the split as JSON (atomically), so every method is scored on the same patches.

    With ``keys`` (one per patch) the patches are also written as (file, window) keys, which
    :func:`load_split` matches against other runs' patches (other feature kinds, machines).
    """
    data: dict = {"train": split.train, "eval": split.eval}
    if keys is not None:
        for part in ("train", "eval"):
            chosen = (keys[i] for i in getattr(split, part))
            data[f"{part}_keys"] = [{"file": f, "window": list(w)} for f, w in chosen]
    return atomic_write_text(path, json.dumps({**data, **(info or {})}))


def load_split(path: str | Path, keys: Sequence[PatchKey] | None = None) -> Split:
    """Read a split written by :func:`save_split`; with ``keys`` (the current patches' keys),
    by its (file, window) keys, so that it means the same patches in this run."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        split = Split(train=[int(i) for i in data["train"]], eval=[int(i) for i in data["eval"]])
        if keys is not None and "train_keys" in data:
            split = Split(*(_match(data[f"{p}_keys"], keys, path) for p in ("train", "eval")))
    except FileNotFoundError:
        raise SarfuseError(path, "split file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SarfuseError(
            path, f"not a split file (need JSON lists 'train' and 'eval'): {e}"
        ) from None
    if set(split.train) & set(split.eval):
        raise SarfuseError(path, "training and evaluation patches overlap")
    if keys is not None and max(split.train + split.eval, default=-1) >= len(keys):
        raise SarfuseError(
            path, f"names patch {max(split.train + split.eval)}, the data has {len(keys)}"
        )
    return split


def _match(saved: list[dict], keys: Sequence[PatchKey], path: Path) -> list[int]:
    """Indices of the saved (file, window) keys among ``keys``: by the file as saved, else by
    its name alone (the same data in another folder or on another machine)."""
    exact = {(f, tuple(w)): i for i, (f, w) in enumerate(keys)}
    by_name: dict[tuple, list[int]] = {}
    for i, (f, w) in enumerate(keys):
        by_name.setdefault((Path(f).name, tuple(w)), []).append(i)
    out = []
    for entry in saved:
        key = (str(entry["file"]), tuple(int(v) for v in entry["window"]))
        found = exact.get(key)
        named = by_name.get((Path(key[0]).name, key[1]), [])
        if found is None and len(named) == 1:
            found = named[0]
        if found is None:
            raise SarfuseError(
                path, f"patch {key[0]} window {list(key[1])} is not in this data "
                "(other files or another --patch-size?)",
            )  # fmt: skip
        out.append(found)
    return out
