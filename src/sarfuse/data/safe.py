"""Sentinel-2 products as downloaded: a ``.SAFE`` folder or its ``.zip`` (L1C or L2A).

The bands are the JPEG 2000 files under ``GRANULE/*/IMG_DATA/`` (L2A: ``R10m/``, ``R20m/``,
``R60m/``; the finest copy of each band is used), read through GDAL, from inside the zip with
``/vsizip/``. They become a band-name -> file mapping, so 20/60 m bands are resampled onto the
10 m grid as for any band-per-file source. The product metadata (``MTD_MSIL2A.xml`` or
``MTD_MSIL1C.xml``) gives the processing baseline and the per-band offset (see
:mod:`sarfuse.data.offset`).
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from sarfuse.data.bands import S2_BANDS, band_name
from sarfuse.data.offset import baseline_offset
from sarfuse.errors import SarfuseError

log = logging.getLogger(__name__)

METADATA_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
_BAND_FILE = re.compile(r"GRANULE/[^/]+/IMG_DATA/(?:R(\d+)m/)?[^/]*_(B\d\d|B8A)(?:_\d+m)?\.jp2")
_OFFSET_TAGS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")  # L2A, L1C
_QUANTIFICATION_TAGS = ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE")
REFLECTANCE_SCALE = 10000.0  # sarfuse reads reflectance x 10000, as the products store it


@dataclass(frozen=True)
class SafeProduct:
    """What sarfuse needs of a product: its bands (file or ``/vsizip/`` path) and offsets."""

    name: str
    level: str  # "L1C" or "L2A"
    baseline: str | None  # e.g. "04.00"; None when the metadata does not say
    bands: dict[str, str]  # band name -> JPEG 2000 file
    offsets: dict[str, float]  # band name -> offset added to its digital numbers
    offset_source: str  # "metadata", "baseline" or "none"


def is_safe(path: Path) -> bool:
    """True for a ``.SAFE`` folder (or any folder holding product metadata) or a ``.zip``."""
    if path.is_dir():
        return path.suffix.upper() == ".SAFE" or any((path / m).is_file() for m in METADATA_FILES)
    return path.is_file() and path.suffix.lower() == ".zip"


def read_safe(path: Path) -> SafeProduct:
    """List the bands of the product at ``path`` and read its metadata."""
    path = Path(path)
    members, read_text, href = _zip_access(path) if path.is_file() else _folder_access(path)
    metadata = _shallowest([m for m in members if m.rsplit("/", 1)[-1] in METADATA_FILES])
    if metadata is None:
        raise SarfuseError(path, f"not a Sentinel-2 product: no {' or '.join(METADATA_FILES)}")
    root = metadata.rsplit("/", 1)[0] + "/" if "/" in metadata else ""
    bands = _band_members([m[len(root) :] for m in members if m.startswith(root)], path)
    try:
        fields = _metadata_fields(read_text(metadata))
    except ElementTree.ParseError as err:
        raise SarfuseError(path, f"{metadata}: not valid XML ({err})") from None
    level = "L2A" if "2A" in metadata.rsplit("/", 1)[-1] else "L1C"
    offsets, source = _offsets(fields, tuple(bands), path)
    product = SafeProduct(
        name=_product_name(path),
        level=level,
        baseline=fields.get("PROCESSING_BASELINE"),
        bands={b: href(root + m) for b, m in bands.items()},
        offsets=offsets,
        offset_source=source,
    )
    log.info(
        "%s: S2 %s, processing baseline %s, offset %s (%s)", path, level, product.baseline,
        _offset_text(offsets), source,
    )  # fmt: skip
    return product


def _product_name(path: Path) -> str:
    name = path.name
    for suffix in (".zip", ".SAFE"):
        if name.upper().endswith(suffix.upper()):
            name = name[: -len(suffix)]
    return name


def _offset_text(offsets: dict[str, float]) -> str:
    values = set(offsets.values())
    return (
        f"{values.pop():g}"
        if len(values) == 1
        else ", ".join(f"{b} {v:g}" for b, v in offsets.items())
    )


def _shallowest(names: list[str]) -> str | None:
    return min(names, key=lambda n: (n.count("/"), n)) if names else None


def _zip_access(path: Path):
    """Member names, a text reader and GDAL paths (``/vsizip/``) of a zipped product."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise SarfuseError(path, f"not a readable zip file ({err})") from None

    def read_text(member: str) -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)

    return members, read_text, lambda member: f"/vsizip/{path.resolve()}/{member}"


def _folder_access(path: Path):
    """Member names (relative, POSIX), a text reader and file paths of a product folder."""
    found = [*path.glob("MTD_MSIL*.xml"), *path.glob("GRANULE/*/IMG_DATA/**/*.jp2")]
    members = [p.relative_to(path).as_posix() for p in found]
    return members, lambda member: (path / member).read_bytes(), lambda member: str(path / member)


def _band_members(members: list[str], path: Path) -> dict[str, str]:
    """Band name -> member of its finest-resolution file, in B1..B12 order."""
    best: dict[str, tuple[int, str]] = {}
    granules = set()
    for member in members:
        match = _BAND_FILE.fullmatch(member)
        if match is None:
            continue
        granules.add(member.split("/")[1])
        name = band_name(match.group(2))
        resolution = int(match.group(1) or 0)
        if name is not None and (name not in best or resolution < best[name][0]):
            best[name] = (resolution, member)
    if len(granules) > 1:
        raise SarfuseError(
            path, f"products of several granules are not supported ({len(granules)})"
        )
    if not best:
        raise SarfuseError(path, "no band files (GRANULE/*/IMG_DATA/*_B02*.jp2) in the product")
    return {b: best[b][1] for b in S2_BANDS if b in best}


def _metadata_fields(xml: bytes) -> dict:
    """Baseline, quantification and the per-band offsets of a product's metadata file."""
    fields: dict = {"offsets": {}, "band_ids": {}}
    for element in ElementTree.fromstring(xml).iter():
        tag = element.tag.rsplit("}", 1)[-1]
        text = (element.text or "").strip()
        if tag == "PROCESSING_BASELINE":
            fields[tag] = text
        elif tag in _QUANTIFICATION_TAGS:
            fields["quantification"] = text
        elif tag in _OFFSET_TAGS:
            fields["offsets"][element.get("band_id", "")] = text
        elif tag == "Spectral_Information":
            fields["band_ids"][element.get("bandId", "")] = element.get("physicalBand", "")
    return fields


def _offsets(fields: dict, bands: tuple[str, ...], path: Path) -> tuple[dict[str, float], str]:
    """Per-band offsets: from the metadata, else from the baseline, else none."""
    quantification = fields.get("quantification")
    if quantification is not None and quantification != f"{REFLECTANCE_SCALE:g}":
        raise SarfuseError(path, f"unexpected quantification value {quantification} (not 10000)")
    if fields["offsets"]:
        by_band = {}
        for band_id, value in fields["offsets"].items():
            name = band_name(fields["band_ids"].get(band_id) or _band_by_id(band_id, path))
            try:
                by_band[name] = float(value)
            except ValueError:
                raise SarfuseError(path, f"offset of band_id {band_id} is not a number") from None
        return {b: by_band.get(b, 0.0) for b in bands}, "metadata"
    if fields.get("PROCESSING_BASELINE"):
        try:
            offset = baseline_offset(fields["PROCESSING_BASELINE"])
        except ValueError as err:
            raise SarfuseError(path, str(err)) from None
        return {b: offset for b in bands}, "baseline"
    return {b: 0.0 for b in bands}, "none"


def _band_by_id(band_id: str, path: Path) -> str:
    """The band of a metadata ``band_id`` (0..12 in B1..B12 order with B8A after B8)."""
    if not band_id.isdigit() or int(band_id) >= len(S2_BANDS):
        raise SarfuseError(path, f"offset for an unknown band_id {band_id!r} in the metadata")
    return S2_BANDS[int(band_id)]
