"""Few-label splits: disjoint, seeded, stratified, nested, saved."""

from __future__ import annotations

import numpy as np
import pytest

from sarfuse.errors import SarfuseError
from sarfuse.mapping.splits import Split, few_label_split, load_split, save_split


def _patches(n: int = 60, seed: int = 0) -> list[np.ndarray]:
    """Mostly class 0/1 patches; class 2..4 rare; every 7th patch unlabelled."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lab = rng.integers(0, 2, (8, 8))
        if i % 7 == 0:
            lab[:] = 255
        elif i in (5, 20, 33):
            lab[:2] = {5: 2, 20: 3, 33: 4}[i]  # classes 2 and 3 in one patch each
        elif i in (11, 40):
            lab[-1] = 4
        out.append(lab)
    return out


def _classes(patches: list[np.ndarray], idx: list[int]) -> set[int]:
    return {int(v) for i in idx for v in np.unique(patches[i]) if v != 255}


def test_disjoint_labelled_only_and_deterministic():
    patches = _patches()
    a = few_label_split(patches, 10, seed=3, num_classes=5)
    assert len(a.train) == 10 and len(set(a.train)) == 10
    assert not set(a.train) & set(a.eval)
    unlabelled = {i for i in range(len(patches)) if i % 7 == 0}
    assert not (set(a.train) | set(a.eval)) & unlabelled
    assert set(a.train) | set(a.eval) == set(range(len(patches))) - unlabelled
    assert few_label_split(patches, 10, seed=3, num_classes=5) == a
    assert few_label_split(patches, 10, seed=4, num_classes=5).train != a.train


@pytest.mark.parametrize("seed", range(5))
def test_small_n_covers_several_classes(seed):
    patches = _patches()
    for n in (1, 3, 5, 8):
        split = few_label_split(patches, n, seed=seed)
        assert len(_classes(patches, split.train)) >= min(n, 5)


def test_nested_for_the_same_seed():
    patches = _patches()
    for n_eval in (None, 10):
        small, mid, big = (few_label_split(patches, n, 7, n_eval=n_eval).train for n in (3, 10, 30))
        assert set(small) <= set(mid) <= set(big)


def test_fixed_eval_set_does_not_depend_on_n():
    patches = _patches()
    splits = [few_label_split(patches, n, seed=1, n_eval=12) for n in (2, 10, 30)]
    assert all(s.eval == splits[0].eval for s in splits) and len(splits[0].eval) == 12
    assert all(not set(s.train) & set(s.eval) for s in splits)


def test_too_many_patches_raise():
    patches = _patches(14)  # 12 labelled
    with pytest.raises(SarfuseError, match="only 11 are available"):
        few_label_split(patches, 12, seed=0)
    with pytest.raises(SarfuseError, match="only 8 are available"):
        few_label_split(patches, 9, seed=0, n_eval=4)
    with pytest.raises(SarfuseError, match="hold out"):
        few_label_split(patches, 1, seed=0, n_eval=12)
    with pytest.raises(SarfuseError, match="outside the scheme"):
        few_label_split(patches, 1, seed=0, num_classes=1)


def test_save_load_round_trip(tmp_path):
    split = few_label_split(_patches(), 5, seed=0, n_eval=10)
    path = save_split(tmp_path / "split.json", split)
    assert load_split(path) == split
    assert isinstance(load_split(path), Split)
    (tmp_path / "bad.json").write_text('{"train": [1]}')
    with pytest.raises(SarfuseError, match="bad.json: not a split file"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(SarfuseError, match="not found"):
        load_split(tmp_path / "missing.json")
