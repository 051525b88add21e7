"""Synthetic demo data: determinism, a plausible class mix, realistic signatures, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sarfuse.data import synth
from sarfuse.data.bands import S1_BANDS, S2_BANDS
from sarfuse.data.layouts import discover
from sarfuse.data.raster import read_label, read_s1, read_s2
from sarfuse.data.schemes import DFC2020
from sarfuse.errors import SarfuseError

FOREST, GRASS, WETLAND, CROP, URBAN, SNOW, BARREN, WATER = 1, 4, 5, 6, 7, 8, 9, 10  # raw DFC
B3, B4, B8, B11 = (S2_BANDS.index(b) for b in ("B3", "B4", "B8", "B11"))


@pytest.fixture(scope="module")
def big() -> synth.Strip:
    """The default demo scene (1024 x 1024, seed 0) rendered in memory."""
    return synth.render(synth.make_scene(1024, 0), 0, 1024)


@pytest.fixture(scope="module")
def clear() -> synth.Strip:
    """The same scene without clouds."""
    return synth.render(synth.make_scene(1024, 0), 0, 1024, clouds=False)


def class_mean(strip: synth.Strip, array: np.ndarray, value: int) -> np.ndarray:
    """Per-band mean of ``array`` (C, H, W) over pixels of class ``value``."""
    return array[:, strip.label == value].astype(np.float64).mean(axis=1)


def test_same_seed_same_pixels_and_other_seeds_differ():
    a = synth.render(synth.make_scene(128, seed=3), 0, 128)
    b = synth.render(synth.make_scene(128, seed=3), 0, 128)
    c = synth.render(synth.make_scene(128, seed=4), 0, 128)
    for name in ("s1", "s2", "label"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_strips_of_any_height_give_the_same_pixels():
    scene = synth.make_scene(128, seed=5)
    whole = synth.render(scene, 0, 128)
    top, bottom = synth.render(scene, 0, 50), synth.render(scene, 50, 128)
    for name in ("s1", "s2", "label"):
        joined = np.concatenate([getattr(top, name), getattr(bottom, name)], axis=-2)
        assert np.array_equal(joined, getattr(whole, name))


def test_all_ten_classes_in_a_plausible_mix(big):
    fractions = np.bincount(big.label.ravel(), minlength=11)[1:] / big.label.size
    assert big.label.min() == 1 and big.label.max() == 10
    assert (fractions > 0.01).all(), fractions
    assert fractions.max() < 0.4
    common = fractions[[FOREST - 1, GRASS - 1, CROP - 1]]
    rare = fractions[[SNOW - 1, BARREN - 1, URBAN - 1]]
    assert common.min() > rare.max()


def test_regions_are_spatially_coherent(big):
    lab = big.label
    same = (lab[1:] == lab[:-1]).sum() + (lab[:, 1:] == lab[:, :-1]).sum()
    assert same / (lab[1:].size + lab[:, 1:].size) > 0.9


def test_wetlands_lie_near_water(big):
    rows, cols = np.nonzero(big.label == WETLAND)
    water = big.label == WATER
    near = [
        water[max(r - 40, 0) : r + 40, max(c - 40, 0) : c + 40].any()
        for r, c in zip(rows[::97], cols[::97], strict=True)
    ]
    assert np.mean(near) > 0.8


def test_optical_signatures_look_real(clear):
    water, forest = class_mean(clear, clear.s2, WATER), class_mean(clear, clear.s2, FOREST)
    assert water[B8] < 0.3 * forest[B8] and water[B11] < 500
    assert forest[B8] > 3 * forest[B4]  # red edge: vegetation is bright in NIR, dark in red
    snow = class_mean(clear, clear.s2, SNOW)
    assert snow[B3] > 6000 and snow[B11] < snow[B3] / 4  # snow: bright visible, dark SWIR
    assert class_mean(clear, clear.s2, URBAN)[B4] > 1.5 * forest[B4]
    assert clear.s2.min() >= 1  # 0 is nodata


def test_sar_signatures_and_speckle(clear):
    water, urban = class_mean(clear, clear.s1, WATER), class_mean(clear, clear.s1, URBAN)
    assert water[0] == pytest.approx(-20.5, abs=1.5) and urban[0] == pytest.approx(-5, abs=1.5)
    assert urban[0] - water[0] > 10
    assert (class_mean(clear, clear.s1, FOREST)[0] - class_mean(clear, clear.s1, GRASS)[0]) > 2
    water_vv = clear.s1[0][clear.label == WATER]
    assert 1.5 < water_vv.std() < 4.5  # 4-look speckle is about 2.3 dB


@pytest.mark.parametrize(
    ("a", "b", "by"),
    [(GRASS, CROP, "s2"), (GRASS, WETLAND, "s1"), (URBAN, BARREN, "s1")],
    ids=["grassland-croplands", "grassland-wetlands", "urban-barren"],
)
def test_some_classes_differ_only_in_s2_and_others_only_in_s1(clear, a, b, by):
    s2a, s2b = class_mean(clear, clear.s2, a), class_mean(clear, clear.s2, b)
    s2_gap = (np.abs(s2a - s2b) / s2a)[[B3, B4, B8, B11]].max()  # relative
    s1_gap = abs(class_mean(clear, clear.s1, a)[0] - class_mean(clear, clear.s1, b)[0])  # dB
    if by == "s2":
        assert s2_gap > 0.15 and s1_gap < 1.5
    else:
        assert s2_gap < 0.1 and s1_gap > 3


def test_clouds_cover_some_of_s2_and_none_of_s1(big, clear):
    assert 0.05 < big.cloud.mean() < 0.25 and clear.cloud.max() == 0
    assert np.array_equal(big.s1, clear.s1) and np.array_equal(big.label, clear.label)
    thick = big.cloud > 0.9
    assert big.s2[S2_BANDS.index("B2")][thick].mean() > 5000
    assert big.s2[S2_BANDS.index("B10")][thick].mean() > 500  # cirrus band sees clouds
    shadow = (big.cloud == 0) & (big.s2[B8] < 0.7 * clear.s2[B8])
    assert 0.01 < shadow.mean() < 0.2


def test_field_windows_and_points_agree():
    field = synth.smooth_field(np.random.default_rng(0), 256, (64, 16))
    rows, cols = np.array([0, 17, 255]), np.array([3, 100, 200])
    grid = field.window(rows, cols)
    assert np.allclose(field.points(rows, cols), np.diag(grid), atol=1e-5)
    whole = field.window(np.arange(256), np.arange(256))
    assert abs(whole.mean()) < 0.1 and whole.std() == pytest.approx(1, abs=0.1)
    idx, weights = synth._basis(np.linspace(-50, 300, 41), 16.0)
    assert np.allclose(weights.sum(axis=1), 1.0)  # B-splines are a partition of unity


@pytest.fixture(scope="module")
def dfc_dir(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("dfc"), size=256, seed=1, patch=128)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("scene"), size=256, seed=1, layout="scene")


def test_dfc2020_layout_files(dfc_dir):
    for sensor, count, dtype in (("s1", 2, "float32"), ("s2", 13, "uint16"), ("dfc", 1, "uint8")):
        files = sorted((dfc_dir / f"{sensor}_0").glob("*.tif"))
        assert [f.name for f in files] == [
            f"ROIs0000_test_{sensor}_0_p{k}.tif" for k in (1, 2, 3, 4)
        ]
        with rasterio.open(files[0]) as src:
            assert (src.count, src.dtypes[0], src.shape) == (count, dtype, (128, 128))
            assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)
    with rasterio.open(dfc_dir / "s2_0" / "ROIs0000_test_s2_0_p1.tif") as src:
        assert src.descriptions == S2_BANDS and src.nodata == 0
    with rasterio.open(dfc_dir / "s1_0" / "ROIs0000_test_s1_0_p1.tif") as src:
        assert src.descriptions == S1_BANDS
    with rasterio.open(dfc_dir / "dfc_0" / "ROIs0000_test_dfc_0_p1.tif") as src:
        colours = src.colormap(1)
    assert all(colours[c.value][:3] == c.rgb for c in DFC2020.classes)
    meta = json.loads((dfc_dir / "synth.json").read_text())
    assert (meta["size"], meta["seed"], meta["layout"], meta["patch"]) == (256, 1, "dfc2020", 128)
    assert sum(meta["class_fractions"].values()) == pytest.approx(1, abs=1e-3)


def test_patches_tile_the_scene(dfc_dir, scene_dir):
    with rasterio.open(scene_dir / "scene_s2.tif") as src:
        scene_transform, scene = src.transform, src.read()
    for k, (row, col) in enumerate([(0, 0), (0, 128), (128, 0), (128, 128)], start=1):
        with rasterio.open(dfc_dir / "s2_0" / f"ROIs0000_test_s2_0_p{k}.tif") as src:
            assert src.transform.almost_equals(
                scene_transform @ rasterio.Affine.translation(col, row)
            )
            assert np.array_equal(src.read(), scene[:, row : row + 128, col : col + 128])


def test_scene_layout_reads_back_through_the_readers(scene_dir):
    assert (scene_dir / "samples.csv").read_text().splitlines() == [
        "s1,s2,label",
        "scene_s1.tif,scene_s2.tif,scene_label.tif",
    ]
    window = Window(0, 0, 256, 64)
    s1, v1 = read_s1(scene_dir / "scene_s1.tif", window)
    s2, v2 = read_s2(scene_dir / "scene_s2.tif", ("B2", "B8"), window)
    label = read_label(scene_dir / "scene_label.tif", DFC2020, window)
    assert s1.shape == (2, 64, 256) and s2.shape == (2, 64, 256) and label.shape == (64, 256)
    assert v1.all() and v2.all() and label.max() <= 9
    assert np.all(s1 < 20) and np.all(s1 > -60)


def test_layouts_discover_the_output(dfc_dir, scene_dir):
    dfc = discover(dfc_dir)
    assert dfc.layout == "dfc2020" and len(dfc.samples) == 4 and dfc.sensors == ("s1", "s2")
    assert dfc.scheme is DFC2020 and dfc.has_labels
    scene = discover(scene_dir)
    assert scene.layout == "csv" and len(scene.samples) == 1 and scene.has_labels


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"size": 300, "patch": 256}, "multiple of patch"),
        ({"layout": "sen12ms"}, "unknown layout"),
        ({"size": 32}, ">= 64"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path, kwargs, problem):
    with pytest.raises(SarfuseError, match=problem):
        synth.generate(tmp_path, **kwargs)
