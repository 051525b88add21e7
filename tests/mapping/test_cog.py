"""COG writing (layout checked by rio-cogeo's validator, overviews by mode for classes), and the
class names and colours GIS software reads: GDAL's PAM side file and the QGIS style."""

from __future__ import annotations

import json
import logging
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from sarfuse.data.raster import RasterInfo, write_geotiff
from sarfuse.data.schemes import DFC2020
from sarfuse.mapping import qgis
from sarfuse.mapping.cog import CLASS_RESAMPLING, PROBA_RESAMPLING, publish_map, to_cog

H, W = 768, 1024  # larger than one 256 block twice over: two overview levels


def _classes() -> np.ndarray:
    """Class 3 everywhere but the top-left pixel of every 2 x 2 block (class 0).

    The mode of each block is 3; its average, 2.25, would round to class 2, which is absent.
    """
    classes = np.full((H, W), 3, np.uint8)
    classes[::2, ::2] = 0
    return classes


@pytest.fixture
def class_tif(tmp_path):
    path = tmp_path / "map.tif"
    write_geotiff(
        path, _classes(), RasterInfo.make(W, H), nodata=255, colormap=DFC2020.colormap(),
        tags={"class_names": json.dumps(DFC2020.names)}, band_names=["class"],
    )  # fmt: skip
    return path


def _overview(path, level: int = 0) -> np.ndarray:
    with rasterio.open(path, overview_level=level) as src:
        return src.read(1)


def test_class_map_becomes_a_valid_cog_with_mode_overviews(class_tif):
    assert cog_validate(class_tif, quiet=True)[2]  # before: no overviews, the validator warns
    to_cog(class_tif, CLASS_RESAMPLING)
    valid, errors, warns = cog_validate(class_tif, quiet=True)
    assert valid and not errors and not warns
    with rasterio.open(class_tif) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2, 4] and src.profile["tiled"]
        assert src.colormap(1)[0][:3] == DFC2020.classes[0].rgb  # carried over by the copy
        assert json.loads(src.tags()["class_names"]) == list(DFC2020.names)
        assert src.descriptions == ("class",) and src.nodata == 255
        np.testing.assert_array_equal(src.read(1), _classes())  # lossless
    assert (_overview(class_tif) == 3).all()  # mode: the majority class of every 2 x 2 block


def test_averaged_classes_would_invent_a_class(tmp_path):
    """The known answer above discriminates: averaged class numbers give the absent class 2.

    (Without a colour table: with one, GDAL averages colours and picks the nearest entry.)
    """
    path = write_geotiff(tmp_path / "plain.tif", _classes(), RasterInfo.make(W, H))
    to_cog(path, PROBA_RESAMPLING)
    assert (_overview(path) == 2).all()


def test_category_names_read_back_through_gdal(class_tif, caplog):
    names, colors = list(DFC2020.names), [c.rgb for c in DFC2020.classes]
    side = qgis.write_pam(class_tif, names, colors, 255)
    assert side.name == "map.tif.aux.xml"
    band = ET.parse(side).getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == names
    rows = band.find("GDALRasterAttributeTable").findall("Row")
    assert [[f.text for f in r] for r in rows][1] == ["1", names[1], *map(str, colors[1]), "255"]
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        with rasterio.open(class_tif) as src:  # GDAL merges the side file into band 1
            assert json.loads(src.tags(1)["class_names"]) == names
    assert not caplog.records


def test_broken_side_file_is_not_read(class_tif):
    """The read-back above fails when GDAL cannot parse the side file."""
    qgis.pam_path(class_tif).write_text("<PAMDataset><PAMRasterBand band='1'><Metadata>")
    with rasterio.open(class_tif) as src:
        assert "class_names" not in src.tags(1)


def test_qml_has_one_palette_entry_per_class(tmp_path):
    colors = [c.rgb for c in DFC2020.classes]
    path = qgis.write_qml(tmp_path / "map.tif", DFC2020.names, colors)
    assert path.name == "map.qml"  # the name QGIS loads with map.tif
    assert path.read_text().startswith("<!DOCTYPE qgis")
    renderer = ET.parse(path).getroot().find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [e.get("label") for e in entries] == list(DFC2020.names)
    assert [e.get("value") for e in entries] == [str(i) for i in range(len(colors))]
    assert entries[0].get("color") == DFC2020.classes[0].color.lower()


def test_publish_map_probabilities_average(tmp_path, class_tif):
    """Probabilities are averaged in their overviews and keep the class names as band names."""
    proba = np.stack([(_classes() == 0), (_classes() == 3)]).astype(np.float32)
    path = tmp_path / "map_proba.tif"
    write_geotiff(path, proba, RasterInfo.make(W, H), nodata=float("nan"), band_names=["a", "b"])
    sides = publish_map(class_tif, DFC2020, path)
    assert cog_validate(path, quiet=True)[0] and cog_validate(class_tif, quiet=True)[0]
    with rasterio.open(path, overview_level=0) as src:
        np.testing.assert_allclose(src.read(), [np.full((H // 2, W // 2), 0.25)] + [
            np.full((H // 2, W // 2), 0.75)])  # fmt: skip
    with rasterio.open(path) as src:
        assert src.descriptions == ("a", "b")
    assert sides["style"].endswith("map.qml") and sides["categories"].endswith("map.tif.aux.xml")


def test_mismatched_names_and_colours_are_refused():
    with pytest.raises(Exception, match="2 class names for 1 colours"):
        qgis.qml_xml(["a", "b"], [(0, 0, 0)])
