"""Superpixels: known-answer segmentation, input choice, disk cache and parallel computation."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from sarfuse import superpixels as sp
from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.superpixels import SuperpixelParams

S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def two_regions(n: int = 64, channels: int = 4, split: int = 20) -> np.ndarray:
    """(C, n, n): columns < split at 500, the rest at 3000."""
    image = np.full((channels, n, n), 500.0, dtype=np.float32)
    image[:, :, split:] = 3000.0
    return image


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SARFUSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "superpixels"


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Counts the Felzenszwalb runs of this process."""
    seen: list[int] = []
    real = sp.felzenszwalb

    def counting(*args, **kwargs):
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sp, "felzenszwalb", counting)
    return seen


@pytest.fixture
def s2_file(tmp_path) -> Path:
    path = tmp_path / "s2.tif"
    data = np.random.default_rng(0).integers(1, 10000, (13, 32, 32), dtype=np.uint16)
    profile = dict(driver="GTiff", width=32, height=32, count=13, dtype="uint16", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=Affine(10, 0, 5e5, 0, -10, 5e6), **profile) as dst:
        dst.write(data)
    return path


def test_two_flat_regions_give_two_segments_with_the_right_boundary():
    seg = sp.segment(two_regions(), SuperpixelParams(sigma=0.0))
    assert seg.dtype == np.int64
    assert np.array_equal(np.unique(seg), [0, 1])
    assert (seg[:, :20] == seg[0, 0]).all() and (seg[:, 20:] == seg[0, -1]).all()
    assert seg[0, 0] != seg[0, -1]


def test_default_params_merge_the_thin_blurred_edge():
    seg = sp.segment(two_regions(n=24, split=12), SuperpixelParams())
    assert np.array_equal(np.unique(seg), [0, 1])
    assert (seg[:, :12] == 0).all() and (seg[:, 12:] == 1).all()


def test_segment_ids_are_contiguous_and_scale_controls_their_number():
    image = np.random.default_rng(1).normal(size=(3, 96, 96)).cumsum(axis=2)
    small = sp.segment(image, SuperpixelParams(scale=20))
    large = sp.segment(image, SuperpixelParams(scale=2000))
    for seg in (small, large):
        assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1))
    assert small.max() > large.max()


def test_segmentation_does_not_depend_on_units():
    image = np.random.default_rng(2).normal(size=(2, 64, 64)).cumsum(axis=1)
    params = SuperpixelParams()
    assert np.array_equal(sp.segment(image, params), sp.segment(image * 1000.0 - 7.0, params))


def test_invalid_pixels_never_share_a_segment_with_valid_ones():
    image = two_regions()
    valid = np.ones((64, 64), dtype=bool)
    valid[5:15, 30:40] = False
    image[0, 40, 40] = np.nan
    seg = sp.segment(image, SuperpixelParams(sigma=0.0), valid)
    valid[40, 40] = False
    assert not set(np.unique(seg[valid])) & set(np.unique(seg[~valid]))
    assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1))


def test_segment_rejects_a_2d_image():
    with pytest.raises(SarfuseError, match="must be"):
        sp.segment(np.zeros((8, 8)), SuperpixelParams())


def test_robust_scale_maps_percentiles_to_unit_range():
    band = np.arange(101, dtype=np.float64).reshape(1, 1, 101)
    scaled = sp.robust_scale(
        np.concatenate([band, np.full_like(band, 5.0)]), np.ones((1, 101), bool)
    )
    assert scaled[0, 0, 2] == pytest.approx(0.0) and scaled[0, 0, 98] == pytest.approx(1.0)
    assert scaled[0, 0, 50] == pytest.approx(0.5)
    assert scaled[0, 0, 0] == 0.0 and scaled[0, 0, 100] == 1.0
    assert (scaled[1] == 0.0).all()  # a constant band carries no edges


def test_relabel_is_contiguous_and_order_preserving():
    assert np.array_equal(sp.relabel(np.array([[7, 3], [3, 42]])), [[1, 0], [0, 2]])


def test_lee_filter_smooths_speckle_and_keeps_edges():
    rng = np.random.default_rng(3)
    clean = np.where(np.arange(64) < 32, -20.0, -5.0)[None, None, :].repeat(64, axis=1)
    noisy = clean + rng.normal(0, 2.0, clean.shape)
    out = sp.lee_filter(noisy, np.ones((64, 64), bool))
    assert out[0, :, 5:27].std() < 0.5 * noisy[0, :, 5:27].std()
    assert out[0, :, :30].mean() == pytest.approx(-20, abs=0.3)
    assert out[0, :, 34:].mean() == pytest.approx(-5, abs=0.3)


def test_superpixel_input_prefers_optical_bands():
    s2 = np.arange(13, dtype=np.float32)[:, None, None] * np.ones((13, 4, 4), np.float32)
    picked = sp.superpixel_input(np.zeros((2, 4, 4)), s2, S2_BANDS)
    assert picked[:, 0, 0].tolist() == [1, 2, 3, 7]  # B2, B3, B4, B8
    assert sp.superpixel_input(None, s2[:3], ("B11", "B12", "B5")).shape == (3, 4, 4)


def test_superpixel_input_falls_back_to_filtered_s1():
    s1 = np.random.default_rng(4).normal(-12, 3, (2, 32, 32))
    out = sp.superpixel_input(s1, None, ())
    assert out.shape == (2, 32, 32) and out.std() < s1.std()
    seg = sp.segment(out, SuperpixelParams())
    assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1))
    with pytest.raises(SarfuseError, match="neither"):
        sp.superpixel_input(None, None, ())


def test_patch_segments_are_cached(cache, calls, s2_file):
    image = two_regions(n=32, channels=13)
    valid = np.ones((32, 32), bool)
    key = sp.cache_key([None, s2_file], window=(0, 0, 32, 32))
    first = sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    assert len(calls) == 1 and len(list(cache.glob("*.npy"))) == 1
    second = sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    assert len(calls) == 1 and np.array_equal(first, second)
    sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(scale=50), key)
    sp.patch_segments(None, image, S2_BANDS[:4], valid, SuperpixelParams(), key)
    other_window = sp.cache_key([s2_file], window=(32, 0, 32, 32))
    sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), other_window)
    assert len(calls) == 4 and len(list(cache.glob("*.npy"))) == 4
    assert not list(cache.glob("*.tmp"))


def test_changed_input_file_is_recomputed(cache, calls, s2_file):
    image, valid = two_regions(n=32, channels=13), np.ones((32, 32), bool)
    key = sp.cache_key([s2_file])
    sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    stat = s2_file.stat()
    os.utime(s2_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = sp.cache_key([s2_file])
    assert fresh != key
    sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), fresh)
    assert len(calls) == 2


def test_corrupt_or_mismatched_cache_is_recomputed(cache, calls, s2_file):
    image, valid = two_regions(n=32, channels=13), np.ones((32, 32), bool)
    key = sp.cache_key([s2_file])
    expected = sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    (path,) = cache.glob("*.npy")
    path.write_bytes(b"not a numpy file")
    again = sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    assert len(calls) == 2 and np.array_equal(again, expected)
    np.save(path, np.zeros((5, 5), np.int64))
    again = sp.patch_segments(None, image, S2_BANDS, valid, SuperpixelParams(), key)
    assert len(calls) == 3 and np.array_equal(again, expected)
    assert np.array_equal(np.load(path), expected)


def test_fingerprint_covers_band_files_and_reports_missing_ones(s2_file, tmp_path):
    assert sp.file_fingerprint([{"B2": s2_file}]) == sp.file_fingerprint([s2_file])
    assert sp.file_fingerprint([s2_file, None]) == sp.file_fingerprint([s2_file])
    with pytest.raises(SarfuseError, match="missing.tif"):
        sp.file_fingerprint([tmp_path / "missing.tif"])


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SARFUSE_CACHE", str(tmp_path))
    assert sp.cache_dir() == tmp_path / "superpixels"
    monkeypatch.delenv("SARFUSE_CACHE")
    assert sp.cache_dir() == Path.home() / ".cache" / "sarfuse" / "superpixels"


def _jobs(s2_file: Path, n: int) -> list:
    rng = np.random.default_rng(5)
    valid = np.ones((32, 32), bool)
    return [
        partial(
            sp.patch_segments,
            None,
            rng.normal(size=(4, 32, 32)).cumsum(axis=2),
            S2_BANDS[:4],
            valid,
            SuperpixelParams(),
            sp.cache_key([s2_file], window=(i, 0, 32, 32)),
        )
        for i in range(n)
    ]


def test_compute_many_runs_in_a_spawned_pool_then_from_cache(cache, s2_file):
    jobs = _jobs(s2_file, 6)
    cold = sp.compute_many(jobs, workers=2, progress=False, start_method="spawn")
    assert (cold["computed"], cold["cached"]) == (6, 0) and cold["seconds"] > 0
    assert len(list(cache.glob("*.npy"))) == 6
    warm = sp.compute_many(jobs, workers=1, progress=False)
    assert (warm["computed"], warm["cached"]) == (0, 6)


def test_errors_in_workers_reach_the_caller_as_one_line(cache, tmp_path):
    gone = tmp_path / "gone.tif"
    job = partial(sp.cache_key, [gone])
    with pytest.raises(SarfuseError, match="gone.tif: cannot read input file"):
        sp.compute_many([job, job], workers=2, progress=False)


class FakeDataset:
    """A dataset whose items lack segments (built without superpixel parameters)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        return {"s2": None}


def test_compute_all_fills_the_cache_of_a_patch_dataset(cache, tmp_path):
    source = discover(generate(tmp_path / "data", size=256, seed=2, patch=128))
    dataset = PatchDataset(source, 128, superpixels=SuperpixelParams())
    cold = sp.compute_all(dataset, workers=2, progress=False)
    assert (cold["computed"], cold["cached"]) == (4, 0)
    warm = sp.compute_all(dataset, workers=1, progress=False)
    assert (warm["computed"], warm["cached"]) == (0, 4)
    segments = dataset[3]["segments"].numpy()
    assert segments.shape == (128, 128) and np.array_equal(
        np.unique(segments), np.arange(segments.max() + 1)
    )
    with pytest.raises(SarfuseError, match="superpixel"):
        sp.compute_all(FakeDataset(), workers=1, progress=False)


def test_a_warm_cache_is_checked_without_reading_patches(cache, tmp_path, monkeypatch):
    source = discover(generate(tmp_path / "data", size=256, seed=3, patch=128))
    dataset = PatchDataset(source, 128, superpixels=SuperpixelParams())
    assert not dataset.segments_cached(0)
    sp.compute_all(dataset, workers=1, progress=False)
    assert all(dataset.segments_cached(i) for i in range(len(dataset)))
    other = PatchDataset(source, 128, superpixels=SuperpixelParams(scale=50.0))
    assert not other.segments_cached(0)  # other parameters: another cache entry

    def no_read(*args, **kwargs):
        raise AssertionError("a cached patch was read")

    monkeypatch.setattr(PatchDataset, "read_window", no_read)
    warm = sp.compute_all(dataset, workers=1, progress=False)
    assert (warm["computed"], warm["cached"]) == (0, 4)
