"""Property-based tests (hypothesis) of the pure functions: each property is checked against a
direct, obviously-correct computation on many generated inputs."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sarfuse.data.indices import compute_indices
from sarfuse.mapping.metrics import confusion_matrix, scores
from sarfuse.mapping.tiling import normalise, tile_windows, window_weights
from sarfuse.ssl.pooling import superpixel_mean
from sarfuse.ssl.views import ViewParams, align_to_view1, make_views

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    b=st.integers(1, 3),
    d=st.integers(1, 4),
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    n_ids=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_superpixel_mean_is_the_mean_of_each_segment(b, d, h, w, n_ids, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(b, d, h, w, generator=gen, dtype=torch.float64)
    segments = torch.randint(0, n_ids, (b, h, w), generator=gen)
    mask = torch.rand(b, h, w, generator=gen) < 0.7
    pooled, batch_idx, seg_id = superpixel_mean(features, segments, mask)
    expected = {}
    for i in range(b):
        for s in range(n_ids):
            where = (segments[i] == s) & mask[i]
            if where.any():
                expected[(i, s)] = features[i][:, where].mean(dim=1)
    assert [(int(i), int(s)) for i, s in zip(batch_idx, seg_id, strict=True)] == sorted(expected)
    for row, key in enumerate(sorted(expected)):
        assert torch.allclose(pooled[row], expected[key])


@FAST
@given(
    b=st.integers(1, 3),
    crop=st.integers(1, 12),
    margin=st.integers(0, 4),
    data=st.data(),
)
def test_view_two_aligned_back_matches_view_one(b, crop, margin, data) -> None:
    """Cut two views of a context of ground coordinates; warping view 2 back onto view 1 gives
    view 1's coordinates wherever the two overlap, and the overlap has the expected size."""
    side = crop + 2 * margin
    shifts = st.lists(st.integers(-margin, margin), min_size=b, max_size=b)
    flips = st.lists(st.booleans(), min_size=b, max_size=b)
    dy, dx = torch.tensor(data.draw(shifts)), torch.tensor(data.draw(shifts))
    params = ViewParams(dy, dx, torch.tensor(data.draw(flips)), torch.tensor(data.draw(flips)),
                        margin)  # fmt: skip
    ground = torch.arange(side * side).reshape(1, 1, side, side).expand(b, 1, side, side)
    batch = {"coords": ground.clone(), "valid": torch.ones(b, side, side, dtype=torch.bool)}
    view1, view2 = make_views(batch, params)
    aligned, overlap = align_to_view1(view2["coords"], params)
    assert torch.equal(aligned[:, 0][overlap], view1["coords"][:, 0][overlap])
    expected = (crop - dy.abs()).clamp_min(0) * (crop - dx.abs()).clamp_min(0)
    assert torch.equal(overlap.sum(dim=(1, 2)), expected)


@FAST
@given(st.integers(1, 200), st.integers(1, 200), st.integers(2, 64), st.data())
def test_tiles_cover_the_scene_and_blend_weights_sum_to_one(height, width, tile, data) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    windows = tile_windows(height, width, tile, overlap)
    cover = np.zeros((height, width), np.int64)
    total = np.zeros((height, width), np.float64)
    for r, c, h, w in windows:
        assert 0 <= r and 0 <= c and r + h <= height and c + w <= width
        assert (h, w) == (min(tile, height), min(tile, width))
        cover[r : r + h, c : c + w] += 1
        weights = window_weights((r, c, h, w), height, width, overlap)
        assert (weights > 0).all()
        total[r : r + h, c : c + w] += weights
    assert (cover >= 1).all()  # every pixel, and no window outside the scene
    # a tile fades only where a neighbour takes over: a pixel of one tile keeps weight 1
    assert np.allclose(total[cover == 1], 1.0)
    blended = np.zeros((height, width), np.float64)
    for r, c, h, w in windows:  # each tile's share after normalising: they sum to one
        weights = window_weights((r, c, h, w), height, width, overlap)
        blended[r : r + h, c : c + w] += normalise(weights[None], total[r : r + h, c : c + w])[0]
    assert np.allclose(blended, 1.0)


S2_BANDS = ("B2", "B3", "B4", "B8", "B11")


@FAST
@given(
    s1=arrays(np.float32, (2, 4, 4), elements=st.floats(-60, 40, width=32)),
    s2=arrays(np.float32, (5, 4, 4), elements=st.sampled_from([0.0, 1.0, 250.0, 10000.0])),
)
def test_indices_are_finite_for_every_valid_input(s1, s2) -> None:
    """Zeros (nodata, dark pixels) and negative dB never give NaN or inf; ratios stay in
    [-1, 1] (DBSI, a difference of two, in [-2, 2])."""
    names = ("mean_sar", "ndvi", "ndwi", "ndbi", "dbsi")
    planes = compute_indices(names, s1=s1, s2=s2, s2_bands=S2_BANDS)
    assert np.isfinite(planes).all()
    assert (np.abs(planes[1:4]) <= 1).all() and (np.abs(planes[4]) <= 2).all()
    assert np.allclose(planes[0], (s1[0] + s1[1]) / 2)


@FAST
@given(
    k=st.integers(1, 6),
    n=st.integers(1, 200),
    seed=st.integers(0, 2**16),
)
def test_confusion_and_scores_agree_with_a_direct_count(k, n, seed) -> None:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, n)
    target[rng.random(n) < 0.2] = 255  # ignored pixels
    pred = rng.integers(0, k, n)
    cm = confusion_matrix(pred, target, k).numpy()
    direct = np.zeros((k, k), np.int64)
    for t, p in zip(target, pred, strict=True):
        if t != 255:
            direct[t, p] += 1
    assert (cm == direct).all()
    kept = target != 255
    if kept.any():
        result = scores(cm)
        assert np.isclose(result["OA"], (pred[kept] == target[kept]).mean())
        for c in range(k):
            tp = np.sum((pred == c) & (target == c))
            union = np.sum(((pred == c) & kept) | (target == c))
            iou = result["per_class"][str(c)]["iou"]
            assert iou is None if not (target == c).any() else np.isclose(iou, tp / union)
