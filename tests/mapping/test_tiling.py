"""Tiles cover the scene and their blending weights sum to one everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from sarfuse.errors import SarfuseError
from sarfuse.mapping.tiling import (
    blend_weights,
    normalise,
    tile_starts,
    tile_windows,
    window_weights,
)

SIZES = [(80, 80, 32, 8), (81, 100, 32, 8), (33, 200, 32, 0), (10, 7, 32, 8), (97, 61, 16, 6)]


def _weight_sum(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    total = np.zeros((height, width), dtype=np.float64)
    for r, c, h, w in tile_windows(height, width, tile, overlap):
        total[r : r + h, c : c + w] += window_weights((r, c, h, w), height, width, overlap)
    return total


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), SIZES)
def test_windows_cover_every_pixel_and_stay_inside(height, width, tile, overlap):
    covered = np.zeros((height, width), dtype=int)
    windows = tile_windows(height, width, tile, overlap)
    for r, c, h, w in windows:
        assert r >= 0 and c >= 0 and r + h <= height and c + w <= width
        assert (h, w) == (min(tile, height), min(tile, width))
        covered[r : r + h, c : c + w] += 1
    assert covered.min() >= 1
    assert windows == sorted(windows)  # tile rows come one after another


def test_known_starts():
    assert tile_starts(80, 32, 8) == [0, 24, 48]
    assert tile_starts(81, 32, 8) == [0, 16, 33, 49]  # spread evenly, not [0, 24, 48, 49]
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(33, 32, 8) == [0, 1]


@pytest.mark.parametrize("size", [33, 55, 56, 57, 100, 1000, 8192])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 8), (512, 64), (16, 0)])
def test_starts_overlap_at_least_overlap_and_end_at_the_edge(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    gaps = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == max(size - tile, 0)
    assert (gaps >= 1).all() and (tile - gaps >= overlap).all()
    assert tile_windows(10, 7, 32, 8) == [(0, 0, 10, 7)]


def test_regular_grid_weights_sum_to_exactly_one():
    # 80 = 3 * (32 - 8) + 8: every overlap is exactly 8 pixels, no normalisation needed
    np.testing.assert_allclose(_weight_sum(80, 80, 32, 8), 1.0, atol=1e-6)


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), SIZES)
def test_normalised_weights_sum_to_one(height, width, tile, overlap):
    total = _weight_sum(height, width, tile, overlap)
    assert total.min() > 0
    blended = np.zeros((height, width))
    for r, c, h, w in tile_windows(height, width, tile, overlap):
        wt = window_weights((r, c, h, w), height, width, overlap)
        blended[r : r + h, c : c + w] += wt / total[r : r + h, c : c + w]
    np.testing.assert_allclose(blended, 1.0, atol=1e-6)
    np.testing.assert_allclose(normalise(total[None], total), 1.0, atol=1e-6)


def test_blend_weights_shape_and_ramps():
    np.testing.assert_array_equal(blend_weights(5, 6, 2, True, True, True, True), np.ones((5, 6)))
    wt = blend_weights(8, 8, 4, at_top=True, at_left=False, at_bottom=True, at_right=True)
    assert wt.dtype == np.float32
    np.testing.assert_array_equal(wt[:, 4:], 1.0)
    assert np.all(np.diff(wt[0, :5]) > 0) and wt[0, 0] > 0  # rises smoothly from near zero
    np.testing.assert_allclose(wt[0, :4] + wt[0, :4][::-1], 1.0, atol=1e-6)  # sin^2 + cos^2


def test_bad_tiling_raises():
    with pytest.raises(SarfuseError, match="overlap"):
        tile_windows(100, 100, 32, 32)
    with pytest.raises(SarfuseError, match="empty scene"):
        tile_windows(0, 100, 32, 8)
