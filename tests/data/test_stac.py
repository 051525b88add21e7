"""Local STAC items and catalogues as data: asset choice by band name, hrefs, offsets, mapping."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
from safe_factory import write_safe
from typer.testing import CliRunner

from sarfuse.cli import app
from sarfuse.data.layouts import discover
from sarfuse.data.products import scene_sample
from sarfuse.data.raster import RasterInfo, read_s1, read_s2, write_geotiff
from sarfuse.data.schemes import SEN1FLOODS11
from sarfuse.data.stac import gdal_href
from sarfuse.errors import SarfuseError

SPAIN = "Spain_7370579"
GRID = RasterInfo.make(24, 24, "EPSG:32632")
WHEN = datetime(2022, 3, 15)


def _item(item_id: str, assets: dict[str, pystac.Asset]) -> pystac.Item:
    bbox = [0.0, 0.0, 1.0, 1.0]
    footprint = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    item = pystac.Item(item_id, footprint, bbox, WHEN, {})
    for key, asset in assets.items():
        item.add_asset(key, asset)
    return item


def _asset(href: str, media: str = pystac.MediaType.GEOTIFF, roles=("data",), **extra):
    return pystac.Asset(href, media_type=media, roles=list(roles), extra_fields=extra)


@pytest.fixture
def spain_catalogue(shared_data: Path, tmp_path: Path) -> Path:
    """A catalogue with one item: the Spain chip's S1, 13-band S2 and label, by relative href."""
    folder = shared_data / "sen1floods11"
    root = tmp_path / "stac"
    root.mkdir()

    def rel(sub: str, suffix: str) -> str:
        return os.path.relpath(folder / sub / f"{SPAIN}_{suffix}.tif", root / SPAIN)

    s2_bands = [{"name": f"B{b}"} for b in "1 2 3 4 5 6 7 8 8A 9 10 11 12".split()]
    item = _item(SPAIN, {
        "s1": _asset(rel("S1", "S1Hand"), **{"sar:polarizations": ["VV", "VH"]}),
        "s2": _asset(rel("S2", "S2Hand"), **{"eo:bands": s2_bands}),
        "label": _asset(rel("Labels", "LabelHand"), roles=("labels",)),
        "thumbnail": _asset("thumb.png", pystac.MediaType.PNG, roles=("thumbnail",)),
    })  # fmt: skip
    catalogue = pystac.Catalog("floods", "one Sen1Floods11 chip")
    catalogue.add_item(item)
    catalogue.normalize_and_save(str(root), pystac.CatalogType.SELF_CONTAINED)
    hrefs = json.loads((root / SPAIN / f"{SPAIN}.json").read_text())["assets"]
    assert hrefs["s2"]["href"].startswith("../")  # relative: resolved against the item's file
    (tmp_path / "scheme.json").write_text(json.dumps(SEN1FLOODS11.to_json()))
    return root / "catalog.json"


def test_a_catalogue_reads_as_the_folder_it_points_at(spain_catalogue, shared_data, tmp_path):
    source = discover(spain_catalogue, classes=tmp_path / "scheme.json")
    folder = discover(shared_data / "sen1floods11")
    assert source.layout == "stac" and source.sensors == ("s1", "s2") and source.has_labels
    sample, reference = source.samples[0], folder.samples[0]
    assert sample.name == SPAIN
    for role in ("s1", "s2", "label"):
        assert Path(sample.get(role)).resolve() == reference.get(role).resolve()
    assert source.s2_bands() == folder.s2_bands()
    assert np.array_equal(read_s1(sample.s1)[0], read_s1(reference.s1)[0])


def test_a_stac_item_as_the_scene_to_map(spain_catalogue, shared_data, tmp_path):
    item = spain_catalogue.parent / SPAIN / f"{SPAIN}.json"
    sample = scene_sample(item, item, s2_offset=-1000.0)
    reference = discover(shared_data / "sen1floods11").samples[0]
    assert Path(sample.s1).resolve() == reference.s1.resolve()
    assert Path(sample.s2).resolve() == reference.s2.resolve()
    assert sample.s2_offset == -1000.0  # the item states no offset: the option's value
    product = write_safe(tmp_path, {"B2": np.full((4, 4), 1500)})
    with pytest.raises(SarfuseError, match="expected one scene with S1 bands"):
        scene_sample(product, None)  # an S2 product given as the S1 scene


@pytest.mark.slow
def test_probe_on_a_catalogue_then_map_a_stac_item(spain_catalogue, tmp_path):
    runner = CliRunner()
    probe_dir = tmp_path / "probe"
    args = ["probe", str(spain_catalogue), "--classes", str(tmp_path / "scheme.json"),
            "--features", "raw", "--classifier", "linear", "--labels", "2", "--epochs", "2",
            "--patch-size", "128", "--out", str(probe_dir), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "S1 read as dB" in result.stderr  # the units detection says what it chose
    item = spain_catalogue.parent / SPAIN / f"{SPAIN}.json"
    out = tmp_path / "map.tif"
    args = ["map", "--probe", str(probe_dir), "--s1", str(item), "--s2", str(item),
            "--out", str(out), "--tile", "256", "--overlap", "32", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.is_file()


def _band_tifs(folder: Path, values: dict[str, int]) -> dict[str, Path]:
    folder.mkdir(parents=True)
    files = {}
    for band, value in values.items():
        files[band] = write_geotiff(
            folder / f"{band}.tif", np.full((24, 24), value, np.uint16), GRID
        )
    return files


def test_band_assets_by_common_name_with_offsets(tmp_path):
    files = _band_tifs(tmp_path / "bands", {"B2": 1500, "B3": 1600, "B8A": 1700})
    offset = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    item = _item("scene", {
        "blue": _asset("bands/B2.tif", **offset),
        "green": _asset("bands/B3.tif", **offset),
        "green-jp2": _asset("elsewhere/B03.jp2", pystac.MediaType.JPEG2000, **offset),
        "n": _asset("bands/B8A.tif", **{"eo:bands": [{"name": "x", "common_name": "nir08"}]}),
        "visual": _asset("bands/B2.tif", roles=("visual",), **{"eo:bands": [
            {"name": "B04"}, {"name": "B03"}, {"name": "B02"}]}),
    })  # fmt: skip
    item.set_self_href(str(tmp_path / "item.json"))
    item.save_object(include_self_link=False)
    with pytest.raises(SarfuseError, match="both an S2 band stack and single-band assets"):
        discover(tmp_path / "item.json")
    item.assets.pop("visual")
    item.save_object(include_self_link=False)
    sample = discover(tmp_path / "item.json").samples[0]
    assert sample.s2 == {"B2": files["B2"], "B3": files["B3"], "B8A": files["B8A"]}  # tif wins
    assert sample.s2_offset == pytest.approx({"B2": -1000.0, "B3": -1000.0})
    data, _ = read_s2(sample.s2, offset=sample.s2_offset)
    assert data[:, 0, 0].tolist() == pytest.approx([500.0, 600.0, 1700.0])


def test_url_hrefs_go_to_gdal_unchecked(tmp_path):
    item = _item("remote", {
        "B02": _asset("https://example.com/tiles/B02.tif"),
        "B03": _asset("s3://bucket/tiles/B03.tif"),
        "B04": _asset("/vsicurl/https://example.com/tiles/B04.tif"),
    })  # fmt: skip
    item.set_self_href(str(tmp_path / "remote.json"))
    item.save_object(include_self_link=False)
    sample = discover(tmp_path / "remote.json").samples[0]
    assert sample.s2 == {
        "B2": "/vsicurl/https://example.com/tiles/B02.tif",
        "B3": "/vsis3/bucket/tiles/B03.tif",
        "B4": "/vsicurl/https://example.com/tiles/B04.tif",
    }


def test_gdal_href():
    base = Path("/data/stac")
    assert gdal_href("a/b.tif", base) == base / "a/b.tif"
    assert gdal_href("/abs/b.tif", base) == Path("/abs/b.tif")
    assert gdal_href("file:///abs/b.tif", base) == Path("/abs/b.tif")
    assert gdal_href("/vsizip//x.zip/b.jp2", base) == "/vsizip//x.zip/b.jp2"


def test_a_missing_member_of_a_zip_is_a_one_line_error(tmp_path):
    missing = f"/vsizip/{tmp_path}/none.zip/B02.tif"
    with pytest.raises(SarfuseError) as err:
        read_s2({"B2": missing})
    assert missing in str(err.value) and "\n" not in str(err.value)


def test_bad_stac_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SarfuseError, match="not a STAC JSON file"):
        discover(tmp_path / "bad.json")
    empty = pystac.Catalog("empty", "no items")
    empty.normalize_and_save(str(tmp_path / "empty"), pystac.CatalogType.SELF_CONTAINED)
    with pytest.raises(SarfuseError, match="holds no items"):
        discover(tmp_path / "empty" / "catalog.json")
    item = _item("rtc", {"vv": _asset("vv.tif"), "vh": _asset("vh.tif")})
    item.set_self_href(str(tmp_path / "rtc.json"))
    item.save_object(include_self_link=False)
    with pytest.raises(SarfuseError, match="one file per polarisation"):
        discover(tmp_path / "rtc.json")
    item = _item("thumbs", {"thumbnail": _asset("t.png", pystac.MediaType.PNG)})
    item.set_self_href(str(tmp_path / "thumbs.json"))
    item.save_object(include_self_link=False)
    with pytest.raises(SarfuseError, match="no Sentinel-1"):
        discover(tmp_path / "thumbs.json")
