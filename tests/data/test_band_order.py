"""The S2 band-order check: real stacks in their order pass, reversed or shuffled ones warn,
with and without the cirrus band B10, on real chips and on generated data."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarfuse.data.band_order import band_order_problem
from sarfuse.data.bands import S2_BANDS, S2_STACKS
from sarfuse.data.layouts import discover
from sarfuse.data.raster import read_s2
from sarfuse.data.validate import validate_source
from sarfuse.errors import SarfuseWarning

L1C_CHIPS = {  # 13-band L1C stacks in shared/data
    "spain": "sen1floods11/S2/Spain_7370579_S2Hand.tif",
    "usa": "sen1floods11-s2-unlabelled/USA_430764_S2Hand.tif",
}
BEN = "bigearthnet-s2/S2A_MSIL2A_20170617T113321_36_85"  # L2A, one file per band

# typical reflectance x 10000 of three surfaces, bands B1..B12 with B8A (L1C, top of atmosphere)
SPECTRA = np.array([
    [1400, 1150, 1050, 800, 1300, 2500, 2900, 2800, 3100, 600, 12, 1900, 950],  # vegetation
    [1500, 1300, 1350, 1450, 1600, 1800, 1950, 2000, 2150, 500, 12, 2800, 2300],  # bare soil
    [1300, 1050, 950, 850, 900, 780, 800, 700, 720, 150, 10, 300, 170],  # turbid water
], dtype=float).T  # fmt: skip


def shuffles(n: int) -> list[np.ndarray]:
    """Reversed, rotated by three, and two random orders of ``n`` bands."""
    return [np.arange(n)[::-1], np.roll(np.arange(n), -3), *(
        np.random.default_rng(seed).permutation(n) for seed in (0, 1))]  # fmt: skip


def _pixels(spectra: np.ndarray, n: int = 400, seed: int = 0) -> np.ndarray:
    """(C, n) pixels: each surface's spectrum times a brightness, with 3 % noise per band."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, spectra.shape[1], n)
    scale = rng.uniform(0.7, 1.3, n)
    return spectra[:, pick] * scale * rng.normal(1.0, 0.03, (spectra.shape[0], n))


def test_known_spectra_in_order_pass_and_out_of_order_fail() -> None:
    values = _pixels(SPECTRA)
    assert band_order_problem(values, S2_BANDS) is None
    for order in shuffles(13):
        assert band_order_problem(values[order], S2_BANDS) is not None
    l2a = values[[S2_BANDS.index(b) for b in S2_STACKS[12]]]
    assert band_order_problem(l2a, S2_STACKS[12]) is None
    problem = band_order_problem(l2a[::-1], S2_STACKS[12])  # B1 taken as B12, B2 as B11
    assert problem is not None
    assert re.fullmatch(
        r"band 12 \(taken as B12\) is not above band 11 .* in only [0-5]% .*", problem
    )


def test_too_few_relations_or_pixels_are_not_judged() -> None:
    four = _pixels(SPECTRA)[[1, 2, 3, 7]]  # B2 B3 B4 B8: no relation applies
    assert band_order_problem(four[::-1], S2_STACKS[4]) is None
    assert band_order_problem(_pixels(SPECTRA, n=10)[::-1], S2_BANDS) is None


def _write(path: Path, data: np.ndarray, like: dict) -> Path:
    """``data`` as a GeoTIFF without band descriptions (its order is all that names its bands)."""
    profile = like | {"count": data.shape[0], "dtype": data.dtype.name, "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _warnings(path: Path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validate_source(discover(path), labels=False, progress=False)
    return [str(w.message) for w in caught if issubclass(w.category, SarfuseWarning)]


def _stack(data_dir: Path, name: str) -> tuple[np.ndarray, dict]:
    """A real (C, H, W) stack in its true order and its profile: an L1C chip with or without
    B10, or the BigEarthNet L2A bands stacked at 10 m."""
    if name == "bigearthnet-l2a":
        files = {f.stem.rsplit("_", 1)[1]: f for f in (data_dir / BEN).glob("*_B*.tif")}
        data, _ = read_s2(files)
        with rasterio.open(files["B02"]) as src:
            return data.astype("uint16"), src.profile
    with rasterio.open(data_dir / L1C_CHIPS[name.split("-")[0]]) as src:
        data, profile = src.read(), src.profile
    if name.endswith("no-b10"):
        data = np.delete(data, S2_BANDS.index("B10"), 0)
    return data, profile


@pytest.mark.parametrize("name", ["spain", "spain-no-b10", "usa", "usa-no-b10", "bigearthnet-l2a"])
def test_real_chips_in_order_pass_and_out_of_order_warn(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    data, profile = _stack(shared_data, name)
    assert _warnings(_write(tmp_path / "true.tif", data, profile)) == []
    for i, order in enumerate(shuffles(data.shape[0])):
        found = _warnings(_write(tmp_path / f"{i}.tif", data[order], profile))
        assert len(found) == 1 and "look out of order" in found[0], (order, found)
        assert found[0].startswith(str(tmp_path / f"{i}.tif"))


def test_generated_scenes_pass_and_their_reversal_warns(synthetic, tmp_path: Path) -> None:
    scene = synthetic(size=128, seed=2, layout="scene")
    patches = synthetic(size=256, seed=4)  # DFC2020 patches, with clouds
    assert _warnings(scene / "scene_s2.tif") == []
    assert not [w for w in _warnings(patches) if "out of order" in w]
    with rasterio.open(scene / "scene_s2.tif") as src:
        data, profile = src.read(), src.profile
    for i, order in enumerate(shuffles(13)):
        found = _warnings(_write(tmp_path / f"s2-{i}.tif", data[order], profile))
        assert len(found) == 1 and "look out of order" in found[0], (order, found)
