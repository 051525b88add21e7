"""Sentinel-2 .SAFE products (folder and zip, L1C and L2A) and the processing-baseline offset."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safe_factory import ORIGIN, write_safe
from typer.testing import CliRunner

from sarfuse.cli import app
from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import discover
from sarfuse.data.offset import add_offset, baseline_offset
from sarfuse.data.products import with_s2_offset
from sarfuse.data.raster import RasterInfo, read_s2, write_geotiff
from sarfuse.errors import SarfuseError

SIDE = 36  # 10 m pixels: 18 at 20 m, 6 at 60 m
BANDS = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B8": 10, "B5": 20, "B11": 20}


def _reflectance(seed: int = 0) -> dict[str, np.ndarray]:
    """Reflectance x 10000 of each band at its own resolution, never 0 (0 is nodata)."""
    rng = np.random.default_rng(seed)
    return {b: rng.integers(1, 6000, (SIDE * 10 // r,) * 2) for b, r in BANDS.items()}


def _corrected_geotiffs(folder: Path, reflectance: dict[str, np.ndarray]) -> Path:
    """The same bands as offset-corrected GeoTIFFs, one per band (``x_B02.tif``)."""
    folder.mkdir(parents=True)
    for band, array in reflectance.items():
        grid = RasterInfo.make(array.shape[1], array.shape[0], "EPSG:32632", ORIGIN, BANDS[band])
        code = f"B{int(band[1:]):02d}"
        write_geotiff(folder / f"x_{code}.tif", array.astype(np.int16), grid)
    return folder


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_l2a_with_offset_reads_as_the_corrected_geotiffs(tmp_path, zipped):
    reflectance = _reflectance()
    offsets = {b: -1000.0 for b in BANDS}
    product = write_safe(
        tmp_path, {b: a + 1000 for b, a in reflectance.items()}, offsets=offsets, zipped=zipped
    )
    sample = discover(product).samples[0]
    assert sample.s2_offset == offsets
    assert str(sample.s2["B2"]).startswith("/vsizip/" if zipped else str(tmp_path))
    assert "_B02_10m.jp2" in str(sample.s2["B2"])  # the 10 m copy, not the 20 m one
    reference = discover(_corrected_geotiffs(tmp_path / "tifs", reflectance)).samples[0]
    names = tuple(BANDS)
    got, valid = read_s2(sample.s2, names, offset=sample.s2_offset)
    want, want_valid = read_s2(reference.s2, names)
    assert got.shape == (len(BANDS), SIDE, SIDE) and valid.all() and want_valid.all()
    native = [i for i, b in enumerate(names) if BANDS[b] == 10]
    assert np.array_equal(got[native], want[native])  # 10 m bands: identical
    assert np.abs(got - want).max() < 1e-3  # resampled bands: float32 rounding only
    without, _ = read_s2(sample.s2, names)  # the bug the offset fixes: 0.1 too bright
    assert np.allclose(without - want, 1000.0)


def test_a_patch_dataset_reads_a_product(tmp_path):
    reflectance = _reflectance(1)
    product = write_safe(tmp_path, {b: a + 1000 for b, a in reflectance.items()}, zipped=True)
    patches = PatchDataset(discover(product), patch_size=16, s2_bands=("B2", "B11"))
    assert len(patches) == 9  # 36 x 36 in 16 px patches
    item = patches[0]
    assert item["s2"].shape == (2, 16, 16) and bool(item["valid"].all())


@pytest.mark.parametrize(
    ("baseline", "expected"), [("04.00", -1000.0), ("05.09", -1000.0), ("02.09", 0.0)]
)
def test_offset_from_the_baseline_when_the_metadata_lists_none(tmp_path, baseline, expected):
    product = write_safe(tmp_path, {"B2": np.full((4, 4), 1500)}, baseline=baseline)
    sample = discover(product).samples[0]
    assert sample.s2_offset == {"B2": expected}
    data, _ = read_s2(sample.s2, offset=sample.s2_offset)
    assert np.all(data == 1500 + expected)


def test_l1c_radiometric_offset(tmp_path):
    product = write_safe(
        tmp_path, {"B2": np.full((4, 4), 1200), "B10": np.full((1, 1), 1100)}, level="L1C",
        offsets={"B2": -1000, "B10": -900},
    )  # fmt: skip
    sample = discover(product).samples[0]
    assert sample.s2_offset == {"B2": -1000.0, "B10": -900.0}
    assert "IMG_DATA/T32TQM_20220315T103639_B02.jp2" in str(sample.s2["B2"])
    data, _ = read_s2(sample.s2, ("B2", "B10"), offset=sample.s2_offset)
    assert np.all(data[0] == 200) and np.all(data[1] == 200)


def test_baseline_rule():
    assert baseline_offset("N0400") == baseline_offset("04.00") == -1000.0
    assert baseline_offset("03.01") == 0.0
    with pytest.raises(ValueError):
        baseline_offset("latest")


def test_offset_leaves_nodata_alone():
    data = np.array([[[0.0, 1500.0]], [[0.0, 2500.0]]], dtype=np.float32)  # (2, 1, 2)
    shifted = add_offset(data, ("B2", "B3"), {"B2": -1000.0})
    assert shifted[:, 0, 1].tolist() == [500.0, 2500.0]


def test_s2_offset_option_fills_in_bare_geotiffs_only(tmp_path):
    reflectance = _reflectance(2)
    tifs = _corrected_geotiffs(tmp_path / "tifs", reflectance)
    bare = with_s2_offset(discover(tifs), -1000.0).samples[0]
    data, _ = read_s2(bare.s2, ("B2",), offset=bare.s2_offset)
    assert np.array_equal(data[0], reflectance["B2"] - 1000.0)
    product = write_safe(tmp_path, {"B2": reflectance["B2"]}, baseline="02.09")
    stated = with_s2_offset(discover(product), -1000.0).samples[0]
    assert stated.s2_offset == {"B2": 0.0}  # the product's own metadata wins


def _one_line_error(path: Path, *fragments: str) -> None:
    with pytest.raises(SarfuseError) as err:
        discover(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_products(tmp_path):
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no product here")
    _one_line_error(empty_zip, "MTD_MSIL2A.xml")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really a zip")
    _one_line_error(broken, "not a readable zip file")
    product = write_safe(tmp_path / "p", {"B2": np.full((4, 4), 1500)})
    (product / "MTD_MSIL2A.xml").write_text("<unclosed>")
    _one_line_error(product, "not valid XML")


def test_cli_stats_of_a_zipped_product_and_of_geotiffs_with_an_offset(tmp_path):
    reflectance = _reflectance(3)
    product = write_safe(
        tmp_path, {b: a + 1000 for b, a in reflectance.items()}, zipped=True,
        offsets={b: -1000.0 for b in BANDS},
    )  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["stats", str(product), "--out", str(tmp_path / "safe.json")])
    assert result.exit_code == 0, result.output
    assert "offset -1000 (metadata)" in result.stderr
    raw = _corrected_geotiffs(tmp_path / "raw", {b: a + 1000 for b, a in reflectance.items()})
    args = ["stats", str(raw), "--s2-offset", "-1000", "--out", str(tmp_path / "tif.json")]
    assert runner.invoke(app, args).exit_code == 0
    safe_stats = json.loads((tmp_path / "safe.json").read_text())["s2"]["mean"]
    tif_stats = json.loads((tmp_path / "tif.json").read_text())["s2"]["mean"]
    assert safe_stats == pytest.approx(tif_stats)
    assert safe_stats["B2"] == pytest.approx(reflectance["B2"].mean(), rel=1e-4)


def test_every_command_resolves_its_data_with_the_offset(tmp_path):
    from sarfuse.runtime import resolve_source

    tifs = _corrected_geotiffs(tmp_path / "tifs", _reflectance(4))
    assert all(x.s2_offset is None for x in resolve_source(tifs).samples)
    assert all(x.s2_offset == -1000.0 for x in resolve_source(tifs, s2_offset=-1000.0).samples)
