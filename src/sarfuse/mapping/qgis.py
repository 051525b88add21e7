"""Class names and colours where GIS software looks for them, beside a class map.

- ``<map>.tif.aux.xml``: GDAL's side file (PAM). It holds the band's category names (value ->
  name), a raster attribute table (value, name, colour; QGIS and ArcGIS show it) and the
  names as band metadata. GDAL merges it with the GeoTIFF whenever the map is opened.
- ``<map>.qml``: a QGIS layer style with the same base name, which QGIS applies when it opens
  the map: a paletted renderer with the scheme's names and colours in its legend.

Both are plain XML built here; the colour table inside the GeoTIFF stays as it is.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from sarfuse.data.schemes import BYTE_MAX, IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_write_text

RGB = Sequence[int]
# GDAL's raster attribute table codes (gdal.h: GDALRATFieldType, GDALRATFieldUsage)
_INTEGER, _STRING = 0, 2
_USAGE = {"Value": 5, "Class_Name": 2, "Red": 6, "Green": 7, "Blue": 8, "Alpha": 9}  # MinMax...
QGIS_VERSION = "3.28.0"  # the oldest long-term release whose style format this follows


def _check(names: Sequence[str], colors: Sequence[RGB]) -> None:
    if len(names) != len(colors) or not names:
        raise SarfuseError(None, f"{len(names)} class names for {len(colors)} colours")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def _attribute_table(band: ET.Element, names: Sequence[str], colors: Sequence[RGB]) -> None:
    rat = _sub(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, field in enumerate(_USAGE):
        defn = _sub(rat, "FieldDefn", index=str(i))
        _sub(defn, "Name", field)
        _sub(defn, "Type", str(_STRING if field == "Class_Name" else _INTEGER))
        _sub(defn, "Usage", str(_USAGE[field]))
    for value, (name, rgb) in enumerate(zip(names, colors, strict=True)):
        row = _sub(rat, "Row", index=str(value))
        for cell in (value, name, *rgb[:3], BYTE_MAX):  # opaque
            _sub(row, "F", str(cell))


def pam_xml(names: Sequence[str], colors: Sequence[RGB], nodata: int = IGNORE_INDEX) -> str:
    """GDAL PAM XML for band 1: category names, attribute table and ``class_names`` metadata."""
    _check(names, colors)
    root = ET.Element("PAMDataset")
    band = _sub(root, "PAMRasterBand", band="1")
    cats = _sub(band, "CategoryNames")
    for name in names:  # the n-th category names pixel value n
        _sub(cats, "Category", name)
    _attribute_table(band, names, colors)
    meta = _sub(band, "Metadata")
    _sub(meta, "MDI", json.dumps(list(names)), key="class_names")
    _sub(meta, "MDI", str(nodata), key="nodata_value")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def qml_xml(names: Sequence[str], colors: Sequence[RGB]) -> str:
    """A QGIS layer style: band 1 drawn as a palette of the classes (nodata, which the GeoTIFF
    declares, is left transparent by QGIS)."""
    _check(names, colors)
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories")
    pipe = _sub(root, "pipe")
    renderer = _sub(
        pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1",
        nodataColor="",
    )  # fmt: skip
    _sub(renderer, "rasterTransparency")
    palette = _sub(renderer, "colorPalette")
    for value, (name, rgb) in enumerate(zip(names, colors, strict=True)):
        color = "#{:02x}{:02x}{:02x}".format(*rgb[:3])
        _sub(
            palette, "paletteEntry", value=str(value), color=color, alpha=str(BYTE_MAX), label=name
        )
    _sub(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    _sub(pipe, "rasterresampler", maxOversampling="2")  # no resampler: nearest, as classes need
    _sub(root, "blendMode", "0")
    ET.indent(root)
    doctype = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
    return doctype + ET.tostring(root, encoding="unicode") + "\n"


def pam_path(raster: str | Path) -> Path:
    """Where GDAL looks for a raster's side file: ``<name>.aux.xml`` beside it."""
    raster = Path(raster)
    return raster.with_name(raster.name + ".aux.xml")


def write_pam(raster: str | Path, names: Sequence[str], colors: Sequence[RGB], nodata: int) -> Path:
    """Write ``<raster>.aux.xml`` (see :func:`pam_xml`) atomically; returns its path."""
    return atomic_write_text(pam_path(raster), pam_xml(names, colors, nodata))


def write_qml(raster: str | Path, names: Sequence[str], colors: Sequence[RGB]) -> Path:
    """Write the QGIS style ``<raster stem>.qml`` (see :func:`qml_xml`) atomically."""
    return atomic_write_text(Path(raster).with_suffix(".qml"), qml_xml(names, colors))
