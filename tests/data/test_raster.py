"""Raster I/O: real Sentinel samples, generated GeoTIFFs, grid checks, writing, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from sarfuse.data.raster import (
    RasterInfo,
    check_aligned,
    detect_s1_units,
    open_writer,
    patch_windows,
    raster_info,
    read_label,
    read_s1,
    read_s2,
    write_geotiff,
)
from sarfuse.data.schemes import DFC2020, SEN1FLOODS11
from sarfuse.errors import SarfuseError

GRID = RasterInfo.make(40, 30)
RNG = np.random.default_rng(0)


def _s1_db(shape=(30, 40)) -> np.ndarray:
    return RNG.uniform(-25, -2, size=(2, *shape)).astype(np.float32)


def _message(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --- real samples ---------------------------------------------------------------------------


def test_sen1floods11_s1_s2_label(shared_data):
    folder = shared_data / "sen1floods11"
    s1_path = folder / "S1" / "Spain_7370579_S1Hand.tif"
    s2_path = folder / "S2" / "Spain_7370579_S2Hand.tif"
    info = raster_info(s1_path)
    assert info.crs.to_epsg() == 4326 and info.shape == (512, 512)

    s1, valid = read_s1(s1_path)
    assert s1.shape == (2, 512, 512) and s1.dtype == np.float32 and valid.all()
    assert detect_s1_units(s1_path) == "db"
    with rasterio.open(s1_path) as src:
        np.testing.assert_array_equal(s1, src.read())

    s2, valid2 = read_s2(s2_path)
    assert s2.shape == (13, 512, 512) and s2.dtype == np.float32 and valid2.all()
    picked, _ = read_s2(s2_path, ["B8", "B02", "B8A"])
    np.testing.assert_array_equal(picked, s2[[7, 1, 8]])

    label = read_label(folder / "Labels" / "Spain_7370579_LabelHand.tif", SEN1FLOODS11)
    with rasterio.open(folder / "Labels" / "Spain_7370579_LabelHand.tif") as src:
        raw = src.read(1)
    assert label.dtype == np.int64 and set(np.unique(label)) <= {0, 1, 255}
    assert (label == 255).sum() == (raw == -1).sum() > 0
    assert (label == 1).sum() == (raw == 1).sum()


def test_bigearthnet_band_files_resampled(shared_data):
    folder = shared_data / "bigearthnet-s2" / "S2A_MSIL2A_20170617T113321_36_85"
    files = {p.stem.rsplit("_", 1)[1]: p for p in folder.glob("*.tif")}
    assert raster_info(files).crs.to_epsg() == 32629
    s2, valid = read_s2(files)
    assert s2.shape == (12, 120, 120) and valid.all()
    picked, _ = read_s2(files, ["B1", "B5", "B8"])
    assert picked.shape == (3, 120, 120)
    with rasterio.open(files["B08"]) as src:
        np.testing.assert_array_equal(picked[2], src.read(1))
    for band, index, native in (("B05", 1, 60), ("B01", 0, 20)):
        with rasterio.open(files[band]) as src:
            assert src.shape == (native, native)
            expected = src.read(1, out_shape=(120, 120), resampling=Resampling.bilinear)
        np.testing.assert_allclose(picked[index], expected, atol=1)
    window = Window(30, 60, 50, 40)
    part, _ = read_s2(files, ["B5"], window=window)
    np.testing.assert_allclose(part[0], picked[1, 60:100, 30:80], atol=1)
    with pytest.raises(SarfuseError, match="S2 band B10 is not available") as err:
        read_s2(files, ["B10"])
    assert str(folder) in _message(err)


def test_awkward_real_chips(shared_data):
    folder = shared_data / "sen1floods11-s1"
    paraguay = folder / "S1" / "Paraguay_34417_S1Hand.tif"
    with pytest.raises(SarfuseError) as err:
        read_s1(paraguay)
    assert _message(err) == f"{paraguay}: all pixels are NaN/nodata"
    _, valid = read_s1(paraguay, window=Window(0, 0, 64, 64))  # a window may be empty
    assert not valid.any()

    nigeria, valid = read_s1(folder / "S1" / "Nigeria_812045_S1Hand.tif")
    assert (~valid).sum() == 579
    assert np.isfinite(nigeria).all() and (nigeria[:, ~valid] == 0).all()

    ghana = read_label(folder / "Labels" / "Ghana_83483_LabelHand.tif", SEN1FLOODS11)
    assert (ghana == 255).all()
    assert (read_label(folder / "Labels" / "Ghana_53713_LabelHand.tif", SEN1FLOODS11) == 0).all()


def test_real_partners_line_up_despite_rounding(shared_data):
    folder = shared_data / "sen1floods11-s1"
    for s1_path in sorted((folder / "S1").glob("*_S1Hand.tif")):
        label = folder / "Labels" / s1_path.name.replace("S1Hand", "LabelHand")
        assert check_aligned(s1_path, label)


# --- S1 -------------------------------------------------------------------------------------


def test_s1_linear_power_detected_and_converted(tmp_path):
    db = _s1_db()
    power = (10 ** (db / 10)).astype(np.float32)
    power[0, 3, 4] = 0.0  # no power: invalid in dB
    write_geotiff(tmp_path / "lin.tif", power, GRID)
    assert detect_s1_units(tmp_path / "lin.tif") == "linear"
    out, valid = read_s1(tmp_path / "lin.tif")
    assert not valid[3, 4] and valid.sum() == valid.size - 1
    np.testing.assert_allclose(out[:, valid], db[:, valid], atol=1e-4)
    as_db, _ = read_s1(tmp_path / "lin.tif", units="db")
    np.testing.assert_allclose(as_db[:, valid], power[:, valid])


def test_s1_units_ambiguous(tmp_path):
    write_geotiff(tmp_path / "dn.tif", np.full((2, 30, 40), 500, np.float32), GRID)
    with pytest.raises(SarfuseError, match="cannot tell the S1 units"):
        read_s1(tmp_path / "dn.tif")
    out, _ = read_s1(tmp_path / "dn.tif", units="linear")
    np.testing.assert_allclose(out, 10 * np.log10(500), rtol=1e-6)


def test_s1_nodata_and_nan_invalid(tmp_path):
    db = _s1_db()
    db[1, 0, 0] = -9999
    db[0, 5, 6] = np.nan
    write_geotiff(tmp_path / "s1.tif", db, GRID, nodata=-9999)
    out, valid = read_s1(tmp_path / "s1.tif")
    assert not valid[0, 0] and not valid[5, 6] and valid.sum() == valid.size - 2
    assert out[0, 5, 6] == 0 and out[1, 0, 0] == 0


def test_s1_bands_by_name_and_wrong_count(tmp_path):
    db = _s1_db()
    stack = np.concatenate([db[1:], np.zeros((1, 30, 40), np.float32), db[:1]])
    write_geotiff(tmp_path / "named.tif", stack, GRID, band_names=["VH", "angle", "VV"])
    out, _ = read_s1(tmp_path / "named.tif")
    np.testing.assert_array_equal(out, db)
    write_geotiff(tmp_path / "three.tif", stack, GRID)
    with pytest.raises(SarfuseError) as err:
        read_s1(tmp_path / "three.tif")
    assert _message(err) == (
        f"{tmp_path / 'three.tif'}: expected 2 Sentinel-1 bands (VV, VH), found 3"
    )


def test_window_equals_slice_of_full_read(tmp_path):
    write_geotiff(tmp_path / "s1.tif", _s1_db(), GRID)
    full, _ = read_s1(tmp_path / "s1.tif")
    part, valid = read_s1(tmp_path / "s1.tif", window=Window(10, 5, 20, 15))
    assert part.shape == (2, 15, 20) and valid.shape == (15, 20)
    np.testing.assert_array_equal(part, full[:, 5:20, 10:30])


# --- S2 -------------------------------------------------------------------------------------


def test_s2_l2a_stack_and_all_zero_nodata(tmp_path):
    data = RNG.integers(1, 10000, size=(12, 30, 40)).astype(np.uint16)
    data[:, 2, 3] = 0  # all bands zero: nodata
    data[5, 7, 7] = 0  # one dark band: still valid
    write_geotiff(tmp_path / "l2a.tif", data, GRID)
    out, valid = read_s2(tmp_path / "l2a.tif", ["B11", "B2"])
    np.testing.assert_array_equal(out[:, valid], data[[10, 1]][:, valid].astype(np.float32))
    assert not valid[2, 3] and valid[7, 7] and valid.sum() == valid.size - 1
    with pytest.raises(SarfuseError, match="band B10 is not available"):
        read_s2(tmp_path / "l2a.tif", ["B10"])


def test_s2_named_bands_and_wrong_count(tmp_path):
    data = RNG.integers(1, 10000, size=(3, 30, 40)).astype(np.uint16)
    write_geotiff(tmp_path / "rgb.tif", data, GRID, band_names=["B04", "B03", "B02"])
    out, _ = read_s2(tmp_path / "rgb.tif", ["B2", "B4"])
    np.testing.assert_array_equal(out, data[[2, 0]])
    write_geotiff(tmp_path / "five.tif", np.ones((5, 30, 40), np.uint16), GRID)
    with pytest.raises(SarfuseError) as err:
        read_s2(tmp_path / "five.tif")
    assert _message(err).startswith(f"{tmp_path / 'five.tif'}: expected a Sentinel-2 stack of 13")
    assert "found 5" in str(err.value)


def test_s2_all_zero_file_is_bad_input(tmp_path):
    write_geotiff(tmp_path / "zero.tif", np.zeros((4, 30, 40), np.uint16), GRID)
    with pytest.raises(SarfuseError, match="zero.tif: all pixels are NaN/nodata"):
        read_s2(tmp_path / "zero.tif")


# --- labels ---------------------------------------------------------------------------------


def test_label_nodata_ignored_and_outside_values_refused(tmp_path):
    raw = np.full((30, 40), 3, np.int16)
    raw[0, 0] = -1
    write_geotiff(tmp_path / "dfc.tif", raw, GRID, nodata=-1)
    label = read_label(tmp_path / "dfc.tif", DFC2020)
    assert label[0, 0] == 255 and (label[1:] == 2).all()
    raw[4, 4] = 42
    write_geotiff(tmp_path / "bad.tif", raw, GRID)
    with pytest.raises(SarfuseError) as err:
        read_label(tmp_path / "bad.tif", DFC2020)
    assert _message(err).startswith(f"{tmp_path / 'bad.tif'}: label values outside the dfc2020")
    assert "-1, 42" in str(err.value)


# --- grids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "problem"),
    [
        (RasterInfo.make(40, 30, crs="EPSG:25833"), "CRS EPSG:32633 vs EPSG:25833"),
        (RasterInfo.make(40, 30, origin=(500020.0, 5000000.0)), "transform origin"),
        (RasterInfo.make(40, 30, resolution=20.0), "pixel size (10, -10) vs (20, -20)"),
        (RasterInfo.make(41, 30), "shape 30x40 vs 30x41"),
    ],
)
def test_misaligned_partners_named(tmp_path, other, problem):
    write_geotiff(tmp_path / "a.tif", _s1_db(), GRID)
    write_geotiff(tmp_path / "b.tif", _s1_db(other.shape), other)
    with pytest.raises(SarfuseError) as err:
        check_aligned(tmp_path / "a.tif", tmp_path / "b.tif")
    message = _message(err)
    assert message.startswith(f"{tmp_path / 'b.tif'}: does not line up with {tmp_path / 'a.tif'}")
    assert problem in message and "--reproject" not in message and "gdalwarp" in message
    assert check_aligned(tmp_path / "a.tif", tmp_path / "b.tif", reproject=True) is False


def test_sub_pixel_rounding_is_aligned(tmp_path):
    write_geotiff(tmp_path / "a.tif", _s1_db(), GRID)
    nudged = RasterInfo.make(40, 30, origin=(500000.0 + 1e-4, 5000000.0))
    write_geotiff(tmp_path / "b.tif", _s1_db(), nudged)
    assert check_aligned(tmp_path / "a.tif", tmp_path / "b.tif")


def test_reproject_onto_first_grid(tmp_path):
    db = _s1_db()
    write_geotiff(tmp_path / "a.tif", db, GRID)
    shifted = RasterInfo.make(40, 30, origin=(500050.0, 5000000.0))  # 5 pixels east
    write_geotiff(tmp_path / "b.tif", db, shifted)
    out, valid = read_s1(tmp_path / "b.tif", target=GRID)
    assert not valid[:, :5].any() and valid[:, 5:].all()
    np.testing.assert_allclose(out[:, :, 5:], db[:, :, :35], atol=1e-5)
    label = np.arange(30 * 40, dtype=np.int32).reshape(30, 40) % 10 + 1
    write_geotiff(tmp_path / "l.tif", label, shifted)
    warped = read_label(tmp_path / "l.tif", DFC2020, target=GRID)
    assert (warped[:, :5] == 255).all()
    np.testing.assert_array_equal(warped[:, 5:], label[:, :35] - 1)


def test_reproject_refuses_disjoint_grids(tmp_path):
    write_geotiff(tmp_path / "a.tif", _s1_db(), GRID)
    far = RasterInfo.make(40, 30, origin=(600000.0, 5000000.0))
    write_geotiff(tmp_path / "b.tif", _s1_db(), far)
    with pytest.raises(SarfuseError, match="does not overlap"):
        check_aligned(tmp_path / "a.tif", tmp_path / "b.tif", reproject=True)


def test_sub_grid_of_a_window():
    sub = GRID.sub(Window(10, 20, 5, 4))
    assert sub.shape == (4, 5) and sub.crs == GRID.crs
    assert sub.transform @ (0, 0) == GRID.transform @ (10, 20)


def test_patch_windows_cover_with_smaller_edges():
    windows = patch_windows(300, 300, 256)
    assert [(w.row_off, w.col_off, w.height, w.width) for w in windows] == [
        (0, 0, 256, 256), (0, 256, 256, 44), (256, 0, 44, 256), (256, 256, 44, 44),
    ]  # fmt: skip


# --- bad files ------------------------------------------------------------------------------


def test_missing_folder_text_and_truncated_files(tmp_path):
    with pytest.raises(SarfuseError) as err:
        read_s1(tmp_path / "nope.tif")
    assert _message(err) == f"{tmp_path / 'nope.tif'}: file not found"
    with pytest.raises(SarfuseError, match="is a folder"):
        raster_info(tmp_path)
    (tmp_path / "text.tif").write_text("not a raster")
    with pytest.raises(SarfuseError) as err:
        read_s2(tmp_path / "text.tif")
    assert _message(err).startswith(f"{tmp_path / 'text.tif'}: not a raster file GDAL can read")
    big = RasterInfo.make(512, 512)
    write_geotiff(tmp_path / "full.tif", RNG.normal(-10, 3, (2, 512, 512)).astype("f4"), big)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(SarfuseError) as err:
        read_s1(tmp_path / "cut.tif", units="db")
    assert _message(err).startswith(f"{tmp_path / 'cut.tif'}: truncated or corrupt raster")
    (tmp_path / "stub.tif").write_bytes(data[:100])
    with pytest.raises(SarfuseError, match="stub.tif: not a raster file GDAL can read"):
        raster_info(tmp_path / "stub.tif")


# --- writing --------------------------------------------------------------------------------


def test_write_geotiff_profile_and_metadata(tmp_path):
    classes = RNG.integers(0, 10, size=(30, 40)).astype(np.uint8)
    path = write_geotiff(
        tmp_path / "out" / "map.tif",
        classes,
        GRID,
        nodata=255,
        colormap=DFC2020.colormap(),
        tags={"classes": "dfc2020", "seed": 3},
        band_names=["class"],
    )
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), classes)
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        assert src.crs.to_epsg() == 32633 and src.transform == GRID.transform
        assert src.nodata == 255 and src.descriptions == ("class",)
        assert src.colormap(1)[0] == (0, 153, 0, 255)
        assert src.tags()["seed"] == "3"
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.tif"]


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "map.tif"
    write_geotiff(path, np.ones((30, 40), np.uint8), GRID)
    with pytest.raises(RuntimeError), open_writer(path, GRID, 1, "uint8") as dst:
        dst.write(np.full((1, 10, 40), 7, np.uint8), window=Window(0, 0, 40, 10))
        raise RuntimeError("interrupted")
    with rasterio.open(path) as src:
        assert (src.read(1) == 1).all()  # the old map is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]
    with open_writer(path, GRID, 1, "uint8") as dst:
        for window in patch_windows(30, 40, 16):
            dst.write(np.full((1, window.height, window.width), 7, np.uint8), window=window)
    with rasterio.open(path) as src:
        assert (src.read(1) == 7).all()


def test_write_geotiff_shape_mismatch(tmp_path):
    with pytest.raises(SarfuseError, match="does not fit a \\(30, 40\\) grid"):
        write_geotiff(tmp_path / "x.tif", np.zeros((2, 10, 10)), GRID)
