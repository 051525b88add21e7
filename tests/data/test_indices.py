"""Spectral / SAR indices: known answers, safe division, numpy and torch, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarfuse.data.indices import (
    INDICES,
    compute_indices,
    dbsi,
    mean_sar,
    ndbi,
    ndvi,
    ndwi,
    required_bands,
)
from sarfuse.errors import SarfuseError

# reflectance x 10000 of one pixel per column: vegetation, water, all-zero (invalid)
B3 = np.array([800.0, 900.0, 0.0])
B4 = np.array([500.0, 600.0, 0.0])
B8 = np.array([3500.0, 300.0, 0.0])
B11 = np.array([1700.0, 100.0, 0.0])


def test_known_answers():
    np.testing.assert_allclose(ndvi(B4, B8), [3000 / 4000, -300 / 900, 0.0])
    np.testing.assert_allclose(ndwi(B3, B8), [-2700 / 4300, 600 / 1200, 0.0])
    np.testing.assert_allclose(ndbi(B8, B11), [-1800 / 5200, -200 / 400, 0.0])
    expected_dbsi = np.array([900 / 2500 - 0.75, -800 / 1000 + 300 / 900, 0.0])
    np.testing.assert_allclose(dbsi(B3, B4, B8, B11), expected_dbsi, rtol=1e-6)
    np.testing.assert_allclose(mean_sar(np.array([-8.0]), np.array([-14.0])), [-11.0])


def test_safe_division_and_dtype():
    out = ndvi(np.array([0, 5, -5], dtype=np.int16), np.array([0, -5, 5], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(INDICES))
def test_torch_matches_numpy(name):
    rng = np.random.default_rng(0)
    spec = INDICES[name]
    bands = [rng.uniform(0, 5000, size=(4, 5)).astype(np.float32) for _ in spec.bands]
    bands[0][0, 0] = 0.0
    expected = spec.function(*bands)
    got = spec.function(*(torch.from_numpy(b) for b in bands))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_compute_indices_stacks_in_order():
    s2 = np.stack([B3, B4, B8, B11])[:, None, :]  # (4, 1, 3)
    s1 = np.full((2, 1, 3), -10.0, dtype=np.float32)
    out = compute_indices(
        ["ndvi", "mean_sar", "ndwi"], s1=s1, s2=s2, s2_bands=("B3", "B4", "B8", "B11")
    )
    assert out.shape == (3, 1, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], ndvi(B4, B8))
    np.testing.assert_allclose(out[1], -10.0)
    np.testing.assert_allclose(out[2, 0], ndwi(B3, B8))
    torch_out = compute_indices(
        ["ndvi"], s2=torch.from_numpy(s2), s2_bands=("B3", "B4", "B8", "B11")
    )
    np.testing.assert_allclose(torch_out.numpy(), out[:1])
    assert compute_indices([], s1=s1).shape == (0, 1, 3)


def test_compute_indices_errors():
    s2 = np.ones((4, 2, 2), dtype=np.float32)
    with pytest.raises(SarfuseError, match="index mean_sar needs S1"):
        compute_indices(["mean_sar"], s2=s2)
    with pytest.raises(SarfuseError, match="index ndbi needs band\\(s\\) B11"):
        compute_indices(["ndbi"], s2=s2, s2_bands=("B2", "B3", "B4", "B8"))
    with pytest.raises(SarfuseError, match="unknown index 'evi'"):
        compute_indices(["evi"], s2=s2)


def test_required_bands():
    assert required_bands(["dbsi", "mean_sar", "ndvi"]) == {
        "s1": ("VV", "VH"),
        "s2": ("B3", "B4", "B8", "B11"),
    }
    assert required_bands([]) == {"s1": (), "s2": ()}
