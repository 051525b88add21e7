"""``map_files`` on a tiny generated scene with holes: the GeoTIFF's grid, dtype, nodata, colour
table and class names; the tiled map equals the map computed in one piece; the quicklook; and
probes that cannot be fed by the given inputs or checkpoint."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from sarfuse.data.layouts import DataSource, discover
from sarfuse.data.schemes import DFC2020
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.features import FeatureMaker
from sarfuse.mapping.probe import load_classifier, predict_proba
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.workflow import ProbeConfig, open_patches, run_probe
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

SIZE = 256
TILES = {"config": MapConfig(64, 16), "progress": False}
PROBE = ProbeConfig(
    labels=3, patch_size=64, epochs=3, features="raw", classifier="linear", self_train=False
)
S2_HOLE = np.s_[100:120, 30:60]  # S2 = 0 (its nodata value) in every band
S1_HOLE = np.s_[200:210, 150:200]  # S1 = NaN


def _punch(path: Path, hole: tuple[slice, slice], value: float) -> None:
    with rasterio.open(path, "r+") as src:
        array = src.read()
        array[(slice(None), *hole)] = value
        src.write(array)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 256 x 256 scene (S1, S2, labels + samples.csv) with an S2 and an S1 nodata hole."""
    out = generate(tmp_path_factory.mktemp("scene") / "data", size=SIZE, seed=0, layout="scene")
    _punch(out / "scene_s2.tif", S2_HOLE, 0)
    _punch(out / "scene_s1.tif", S1_HOLE, np.nan)
    return out


@pytest.fixture(scope="module")
def source(scene: Path) -> DataSource:
    return discover(scene)


@pytest.fixture(scope="module")
def raw_probe(source: DataSource, tmp_path_factory) -> Path:
    """A linear probe on raw bands + indices: per-pixel, so tiles cannot change its map."""
    out = tmp_path_factory.mktemp("scene-probe")
    run_probe(source, out, PROBE, progress=False)
    return out


@pytest.fixture(scope="module")
def mapped(scene: Path, raw_probe: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("scene-map") / "map.tif"
    s1, s2 = scene / "scene_s1.tif", scene / "scene_s2.tif"
    return out, map_files(
        raw_probe, out, s1=s1, s2=s2, config=MapConfig(64, 16, probabilities=True), progress=False
    )


def _whole_scene_map(source: DataSource, probe_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(classes (H, W) uint8 with 255 where invalid, probabilities (K, H, W)) in one piece."""
    clf, meta = load_classifier(probe_dir / "probe.pt")
    cfg = ProbeConfig(patch_size=SIZE, indices=tuple(meta["indices"]))
    item = open_patches(source, meta["contract"], cfg)[0]
    batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
    proba = predict_proba(clf, FeatureMaker("raw", None)(batch))[0].numpy()
    valid = item["valid"].numpy()
    return np.where(valid, proba.argmax(0), 255).astype(np.uint8), proba


def test_map_keeps_the_input_grid(scene: Path, mapped: tuple[Path, dict]) -> None:
    out, result = mapped
    assert result["path"] == str(out)
    with rasterio.open(out) as dst, rasterio.open(scene / "scene_s2.tif") as src:
        assert dst.crs == src.crs and dst.crs is not None
        assert dst.transform == src.transform
        assert (dst.height, dst.width, dst.count) == (SIZE, SIZE, 1)
        assert dst.dtypes == ("uint8",)
        assert dst.nodata == 255
        assert dst.compression.name.lower() == "deflate"
        assert dst.block_shapes == [(256, 256)]  # tiled: one 256 x 256 block


def test_map_carries_colours_and_class_names(mapped: tuple[Path, dict]) -> None:
    out, _ = mapped
    with rasterio.open(out) as dst:
        colours = dst.colormap(1)
        names = json.loads(dst.tags()["class_names"])
    assert names == list(DFC2020.names)
    for index, cls in enumerate(DFC2020.classes):
        assert colours[index] == (*cls.rgb, 255), cls.name
    assert colours[255][3] == 0  # nodata is transparent


def test_map_and_probabilities_are_cogs_for_gis(mapped: tuple[Path, dict]) -> None:
    """The default map is a COG; its class names sit in GDAL's side file and a QGIS style."""
    from rio_cogeo.cogeo import cog_validate

    out, result = mapped
    for path in (out, Path(result["probabilities"])):
        assert cog_validate(path, quiet=True)[0], path
        with rasterio.open(path) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    with rasterio.open(result["probabilities"]) as src:
        assert src.descriptions == DFC2020.names
    with rasterio.open(out) as src:  # read from map.tif.aux.xml
        assert json.loads(src.tags(1)["class_names"]) == list(DFC2020.names)
    assert result["categories"] == str(out) + ".aux.xml"
    assert result["style"] == str(out.with_suffix(".qml"))


def test_invalid_input_is_nodata(mapped: tuple[Path, dict]) -> None:
    out, result = mapped
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    assert (classes[S2_HOLE] == 255).all() and (classes[S1_HOLE] == 255).all()
    holes = np.zeros(classes.shape, bool)
    holes[S2_HOLE] = holes[S1_HOLE] = True
    assert (classes[~holes] < len(DFC2020.classes)).all()
    assert result["invalid_pixels"] == holes.sum()
    assert sum(result["class_pixels"].values()) == (~holes).sum()


def test_tiled_map_equals_the_map_in_one_piece(
    source: DataSource, raw_probe: Path, mapped: tuple[Path, dict]
) -> None:
    out, result = mapped
    assert result["tiles"] > 4  # really tiled
    expected, proba = _whole_scene_map(source, raw_probe)
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    inner = np.s_[16:-16, 16:-16]
    np.testing.assert_array_equal(classes[inner], expected[inner])
    np.testing.assert_array_equal(classes, expected)  # per-pixel features: the borders too
    with rasterio.open(result["probabilities"]) as src:
        tiled_proba = src.read()
    valid = expected != 255
    np.testing.assert_allclose(tiled_proba[:, valid], proba[:, valid], atol=1e-5)
    assert np.isnan(tiled_proba[:, ~valid]).all()


def test_quicklook_png(mapped: tuple[Path, dict]) -> None:
    out, result = mapped
    png = Path(result["quicklook"])
    assert png == out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000


def test_missing_sensor_is_refused(scene: Path, raw_probe: Path, tmp_path: Path) -> None:
    with pytest.raises(SarfuseError, match="need S2"):
        map_files(raw_probe, tmp_path / "m.tif", s1=scene / "scene_s1.tif", **TILES)
    with pytest.raises(SarfuseError, match="--s1 and/or --s2"):
        map_files(raw_probe, tmp_path / "m.tif", **TILES)
    assert not (tmp_path / "m.tif").exists()


def test_bad_tiling_is_refused(scene: Path, raw_probe: Path, tmp_path: Path) -> None:
    s1, s2 = scene / "scene_s1.tif", scene / "scene_s2.tif"
    with pytest.raises(SarfuseError, match="--overlap"):
        map_files(raw_probe, tmp_path / "m.tif", s1=s1, s2=s2, config=MapConfig(64, 32))


@pytest.mark.parametrize("kind", ["pretrained", "pretrained+raw"])
def test_network_probe_maps_and_refuses_another_checkpoint(
    scene: Path, source: DataSource, tmp_path: Path, kind: str
) -> None:
    """A probe on network features maps with its checkpoint, not with one of another contract."""
    tiny = PretrainConfig(
        crop=16, batch=4, width=4, feat_dim=8, steps=2, patch_size=64, device="cpu"
    )
    ckpt = pretrain(scene, tmp_path / "run", tiny, progress=False).checkpoint
    probe_dir = tmp_path / "probe"
    cfg = replace(PROBE, features=kind, epochs=1)
    run_probe(source, probe_dir, cfg, ckpt, progress=False)
    s1, s2 = scene / "scene_s1.tif", scene / "scene_s2.tif"
    result = map_files(probe_dir, tmp_path / "ok.tif", s1=s1, s2=s2, quicklook=False, **TILES)
    assert Path(result["path"]).is_file()
    _bfloat16_map_agrees(probe_dir, Path(result["path"]), s1, s2, tmp_path)

    other = torch.load(ckpt, map_location="cpu", weights_only=True)
    other["sarfuse"] = copy.deepcopy(other["sarfuse"])
    other["sarfuse"]["s2_bands"] = ["B2", "B3", "B4", "B8", "B11"]
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(SarfuseError, match="does not match the probe"):
        map_files(
            probe_dir, tmp_path / "bad.tif", s1=s1, s2=s2, checkpoint=tmp_path / "other.ckpt",
            **TILES,
        )  # fmt: skip
    assert not (tmp_path / "bad.tif").exists()


def _bfloat16_map_agrees(probe_dir: Path, exact: Path, s1: Path, s2: Path, tmp: Path) -> None:
    """The network in bfloat16 gives the float32 map on nearly every pixel (only pixels at a
    near tie between classes may flip), and each run records its arithmetic."""
    maps = {}
    for precision in ("32", "bf16"):
        config = replace(TILES["config"], precision=precision)
        out = tmp / f"map-{precision}.tif"
        result = map_files(probe_dir, out, s1=s1, s2=s2, config=config, progress=False)
        assert result["precision"] == precision
        with rasterio.open(out) as src:
            maps[precision] = src.read(1)
    with rasterio.open(exact) as src:  # precision auto: one of the two
        np.testing.assert_array_equal(src.read(1) != 255, maps["32"] != 255)
    assert (maps["bf16"] == maps["32"]).mean() > 0.99
