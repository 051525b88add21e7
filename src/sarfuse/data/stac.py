"""Scenes from a local STAC item, catalogue, collection or item collection (JSON, via pystac).

Each item is one sample. Its assets are sorted by what they hold: Sentinel-2 bands (by
``eo:bands`` name such as ``B02``, by common name such as ``red`` / ``nir08``, or by the asset key),
Sentinel-1 ``VV``/``VH`` (``sar:polarizations`` or the key) and labels (role ``labels``). Hrefs may
be paths relative to the JSON, absolute paths, ``/vsicurl/`` or ``http(s)://`` URLs (read through
GDAL's ``/vsicurl/``) or ``s3://`` URLs (``/vsis3/``); URLs are handed to GDAL unchecked. A
``raster:bands`` scale of 0.0001 with an offset (e.g. -0.1 from processing baseline 04.00) sets
the band's offset in digital numbers (-1000).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sarfuse.data.bands import S1_BANDS, S2_BANDS, band_name
from sarfuse.data.raster import is_gdal_url
from sarfuse.errors import SarfuseError

# STAC eo common names of the Sentinel-2 bands (the red-edge bands share "rededge": by name only)
COMMON_NAMES = {
    "coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "rededge1": "B5", "rededge2": "B6",
    "rededge3": "B7", "nir": "B8", "nir08": "B8A", "nir09": "B9", "cirrus": "B10",
    "swir16": "B11", "swir22": "B12",
}  # fmt: skip
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
_REFLECTANCE_SCALE = 1e-4  # a raster:bands scale that gives reflectance from sarfuse's numbers


@dataclass
class StacScene:
    """The files of one STAC item, sorted by role, with per-band S2 offsets when stated."""

    name: str
    s1: str | Path | None = None
    s2: dict[str, str | Path] | str | Path | None = None
    label: str | Path | None = None
    s2_offsets: dict[str, float] = field(default_factory=dict)


def gdal_href(href: str, base: Path | None) -> str | Path:
    """An asset href as GDAL opens it: URLs as virtual paths, relative paths against ``base``."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[len('s3://') :]}"
    href = href.removeprefix("file://")
    if is_gdal_url(href):
        return href
    path = Path(href)
    return path if path.is_absolute() or base is None else base / path


def read_stac(path: Path) -> list[StacScene]:
    """The scenes of every item in the STAC JSON at ``path`` (item, catalogue or collection)."""
    import pystac

    try:
        kind = json.loads(Path(path).read_text()).get("type")
    except (OSError, ValueError, AttributeError) as err:
        raise SarfuseError(path, f"not a STAC JSON file ({err})") from None
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_file(str(path)))
        else:
            stac = pystac.read_file(str(path))
            items = (
                [stac] if isinstance(stac, pystac.Item) else list(stac.get_items(recursive=True))
            )
    except (pystac.STACError, KeyError, TypeError, ValueError, OSError) as err:
        raise SarfuseError(path, f"not a readable STAC item or catalogue ({err})") from None
    if not items:
        raise SarfuseError(path, "the STAC catalogue holds no items")
    return [_scene(item, Path(path)) for item in items]


def _scene(item, json_path: Path) -> StacScene:
    """Sort an item's raster assets into S1, S2 bands and labels."""
    self_href = item.get_self_href()
    base = Path(self_href).parent if self_href and not is_gdal_url(self_href) else json_path.parent
    scene = StacScene(item.id)
    s2_bands: dict[str, tuple[bool, str | Path]] = {}  # band -> (is a JPEG 2000, file)
    stacks: list[str | Path] = []
    for key, asset in item.assets.items():
        if not _is_raster(asset):
            continue
        href = gdal_href(asset.href, base)
        names = _asset_bands(key, asset)
        if "labels" in (asset.roles or []) or key.lower() in ("label", "labels"):
            scene.label = href
        elif names and all(n in S1_BANDS for n in names):
            if scene.s1 is not None or len(names) == 1:
                raise SarfuseError(
                    item.id, "STAC item has S1 as one file per polarisation; sarfuse reads VV "
                    "and VH from one 2-band file (stack them first)",
                )  # fmt: skip
            scene.s1 = href
        elif len(names) == 1 and names[0] in S2_BANDS:
            jp2 = str(href).lower().endswith(".jp2")
            if names[0] not in s2_bands or (s2_bands[names[0]][0] and not jp2):  # GeoTIFF first
                s2_bands[names[0]] = (jp2, href)
                _set_offset(scene, names[0], asset, item.id)
        elif len(names) > 1 and all(n in S2_BANDS for n in names):
            stacks.append(href)
    if stacks and s2_bands:
        raise SarfuseError(item.id, "STAC item has both an S2 band stack and single-band assets")
    if len(stacks) > 1:
        raise SarfuseError(item.id, f"STAC item has {len(stacks)} S2 band stacks, expected one")
    scene.s2 = stacks[0] if stacks else {b: s2_bands[b][1] for b in S2_BANDS if b in s2_bands}
    if scene.s1 is None and not scene.s2:
        raise SarfuseError(item.id, "STAC item has no Sentinel-1 (VV, VH) or Sentinel-2 band asset")
    scene.s2 = scene.s2 or None
    return scene


def _is_raster(asset) -> bool:
    media = (asset.media_type or "").lower()
    return "tiff" in media or "jp2" in media or asset.href.lower().endswith(_RASTER_SUFFIXES)


def _asset_bands(key: str, asset) -> list[str]:
    """Canonical band names an asset holds: eo:bands names, else common names, else its key."""
    extra = asset.extra_fields
    names = [p.upper() for p in extra.get("sar:polarizations", [])]
    for entry in extra.get("eo:bands") or extra.get("bands") or []:
        by_name = band_name(str(entry.get("name", "")))
        common = entry.get("common_name") or entry.get("eo:common_name")
        names.append(by_name or COMMON_NAMES.get(str(common).lower(), ""))
    if not names:
        names = [band_name(key) or COMMON_NAMES.get(key.lower(), "")]
    return [n for n in names if n]


def _set_offset(scene: StacScene, band: str, asset, item_id: str) -> None:
    """The band's offset in digital numbers from ``raster:bands`` scale and offset, if stated."""
    info = (asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or [{}])[0]
    if "offset" not in info:
        return
    scale = float(info.get("scale", 1.0))
    if abs(scale - _REFLECTANCE_SCALE) > 1e-12:
        raise SarfuseError(
            item_id, f"S2 asset {band}: raster scale {scale:g} (sarfuse reads scale 0.0001 only)"
        )
    scene.s2_offsets[band] = float(info["offset"]) / scale
