"""Normalisation: the paper's known values, numpy/torch parity, streaming statistics, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sarfuse.data import normalise
from sarfuse.data.layouts import discover
from sarfuse.data.normalise import (
    PAPER_STATS,
    Normaliser,
    compute_stats,
    load_stats,
    save_stats,
)
from sarfuse.data.raster import RasterInfo, write_geotiff
from sarfuse.errors import SarfuseError


def test_paper_values():
    assert PAPER_STATS["s1"]["mean"] == {"VV": -9.02, "VH": -15.73}
    assert PAPER_STATS["s1"]["std"] == {"VV": 3.58, "VH": 3.67}
    s2 = PAPER_STATS["s2"]
    assert [s2["mean"][b] for b in ("B2", "B3", "B4", "B8")] == [1353, 1265, 1269, 1976]
    assert [s2["std"][b] for b in ("B2", "B3", "B4", "B8")] == [242, 291, 403, 517]
    assert len(s2["mean"]) == len(s2["std"]) == 13


def test_s1_clip_then_standardise():
    x = np.array([[[-9.02, -30.0, 5.0]], [[-15.73, -25.0, -12.06]]], dtype=np.float32)  # (2,1,3)
    out = Normaliser().apply_s1(x)
    expected = [
        [[0.0, (-25 + 9.02) / 3.58, 9.02 / 3.58]],
        [[0.0, (-25 + 15.73) / 3.67, (-12.06 + 15.73) / 3.67]],
    ]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_s2_clip_then_standardise_by_band_name():
    x = np.array([[[1976.0, 12000.0]], [[1353.0, -5.0]]], dtype=np.float32)  # B8, B2
    out = Normaliser().apply_s2(x, ("B8", "B2"))
    expected = [[[0.0, (10000 - 1976) / 517]], [[0.0, -1353 / 242]]]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_torch_batches_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.uniform(-40, 5, size=(3, 2, 4, 4)).astype(np.float32)  # (B, C, H, W)
    norm = Normaliser()
    expected = np.stack([norm.apply_s1(b) for b in x])
    got = norm.apply_s1(torch.from_numpy(x))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_missing_statistics_and_band_count():
    norm = Normaliser.from_stats({"s2": {"mean": {"B2": 1.0}, "std": {"B2": 2.0}}})
    assert norm.s1_mean == PAPER_STATS["s1"]["mean"]  # absent sensor: the paper's values
    with pytest.raises(SarfuseError, match="no normalisation statistics for band\\(s\\) B3"):
        norm.apply_s2(np.zeros((2, 1, 1)), ("B2", "B3"))
    with pytest.raises(SarfuseError, match="expected 2 bands on axis -3"):
        Normaliser().apply_s1(np.zeros((3, 2, 2)))


def _dataset(tmp_path):
    """Two S1+S2 scenes with known values, NaN pixels and values beyond the clip ranges."""
    rng = np.random.default_rng(2)
    rows = ["s1,s2,label"]
    arrays = []
    for i, (h, w) in enumerate([(20, 30), (15, 12)]):
        grid = RasterInfo.make(w, h)
        s1 = rng.uniform(-35, 3, size=(2, h, w)).astype(np.float32)
        s1[:, 0, :4] = np.nan
        s2 = rng.integers(0, 12000, size=(13, h, w)).astype(np.uint16)
        s2[:, -1, -3:] = 0
        write_geotiff(tmp_path / f"s1_{i}.tif", s1, grid)
        write_geotiff(tmp_path / f"s2_{i}.tif", s2, grid)
        rows.append(f"s1_{i}.tif,s2_{i}.tif,")
        arrays.append((s1, s2))
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    return discover(tmp_path), arrays


def _expected(values: list[np.ndarray], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.clip(np.concatenate(values, axis=1).astype(np.float64), lo, hi)
    return stacked.mean(axis=1), stacked.std(axis=1)


@pytest.mark.parametrize("block", [1024, 7])  # whole scenes, and blocks merged across windows
def test_compute_stats_valid_pixels_after_clipping(tmp_path, monkeypatch, block):
    monkeypatch.setattr(normalise, "_BLOCK", block)
    source, arrays = _dataset(tmp_path)
    stats = compute_stats(source, s2_bands=("B8", "B2"), progress=False)
    s1_valid = [s1[:, np.isfinite(s1).all(0)] for s1, _ in arrays]
    mean, std = _expected(s1_valid, -25, 0)
    assert stats["s1"]["count"] == sum(v.shape[1] for v in s1_valid) == 20 * 30 + 15 * 12 - 8
    np.testing.assert_allclose([stats["s1"]["mean"][b] for b in ("VV", "VH")], mean, rtol=1e-9)
    np.testing.assert_allclose([stats["s1"]["std"][b] for b in ("VV", "VH")], std, rtol=1e-9)
    s2_valid = [s2[[7, 1]][:, (s2 != 0).any(0)] for _, s2 in arrays]
    mean, std = _expected(s2_valid, 0, 10000)
    assert stats["s2"]["count"] == 20 * 30 + 15 * 12 - 6
    np.testing.assert_allclose([stats["s2"]["mean"][b] for b in ("B8", "B2")], mean, rtol=1e-9)
    np.testing.assert_allclose([stats["s2"]["std"][b] for b in ("B8", "B2")], std, rtol=1e-9)


def test_stats_json_round_trip(tmp_path):
    source, _ = _dataset(tmp_path)
    stats = compute_stats(source, progress=False)
    path = save_stats(stats, tmp_path / "out" / "stats.json")
    loaded = load_stats(path)
    assert loaded == json.loads(json.dumps(stats))
    norm = Normaliser.from_stats(loaded)
    x = np.full((1, 1, 1), stats["s1"]["mean"]["VH"], np.float32)
    np.testing.assert_allclose(norm.apply_s1(x, ("VH",)), 0.0, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "statistics file not found"),
        ("[1, 2", "not valid JSON"),
        ('{"s1": {"mean": {"VV": 1}}}', "s1: expected 'mean' and 'std' per band"),
        ('{"clip": {}}', "expected statistics for s1 and/or s2"),
    ],
)
def test_load_stats_errors(file_error, text, problem):
    assert file_error(load_stats, "stats.json", text).startswith(problem)
