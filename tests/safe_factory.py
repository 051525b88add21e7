"""Write small Sentinel-2 products in the ``.SAFE`` layout (real file names, JPEG 2000 bands).

Enough of the real layout for sarfuse's reader: ``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml`` with the
processing baseline, the quantification value, the per-band offsets and the band ids, and
``GRANULE/<id>/IMG_DATA/`` band files (L2A: ``R10m/``, ``R20m/``, ``R60m/`` with ``_10m`` name
endings; L1C: one file per band), written losslessly with GDAL's JP2OpenJPEG driver.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from sarfuse.data.bands import RESOLUTION, S2_BANDS

TILE = "T32TQM"
SENSING = "20220315T103639"
ORIGIN = (600000.0, 5100000.0)  # UTM 32N


def product_name(level: str, baseline: str) -> str:
    return f"S2B_MSI{level}_{SENSING}_N{baseline.replace('.', '')}_R008_{TILE}_20220315T130000"


def metadata_xml(level: str, baseline: str, offsets: dict[str, float] | None) -> str:
    """The fields of a product metadata file that sarfuse reads, in the real element names."""
    tag, listing = (
        ("BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST")
        if level == "L2A"
        else ("RADIO_ADD_OFFSET", "Radiometric_Offset_List")
    )
    quant = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>' for i, b in enumerate(S2_BANDS)
    )
    offset_list = ""
    if offsets is not None:
        entries = "".join(
            f'<{tag} band_id="{S2_BANDS.index(b)}">{v:g}</{tag}>' for b, v in offsets.items()
        )
        offset_list = f"<{listing}>{entries}</{listing}>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-{level[1:]}_User_Product '
        f'xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd">'
        f"<n1:General_Info><Product_Info><PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>"
        f"<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
        f'<{quant} unit="none">10000</{quant}></QUANTIFICATION_VALUES_LIST>'
        f"{offset_list}<Spectral_Information_List>{spectral}</Spectral_Information_List>"
        f"</Product_Image_Characteristics></n1:General_Info></n1:Level-{level[1:]}_User_Product>"
    )


def _write_jp2(path: Path, array: np.ndarray, resolution: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    transform = Affine(resolution, 0, ORIGIN[0], 0, -resolution, ORIGIN[1])
    profile = dict(
        driver="JP2OpenJPEG", width=array.shape[1], height=array.shape[0], count=1,
        dtype="uint16", crs="EPSG:32632", transform=transform, QUALITY=100, REVERSIBLE="YES",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(np.uint16), 1)


def band_file(level: str, band: str, resolution: int) -> str:
    """A band's path inside the product, as the real products name it."""
    code = "B8A" if band == "B8A" else f"B{int(band[1:]):02d}"
    granule = f"GRANULE/{level}_{TILE}_A035000_{SENSING}/IMG_DATA"
    if level == "L1C":
        return f"{granule}/{TILE}_{SENSING}_{code}.jp2"
    return f"{granule}/R{resolution}m/{TILE}_{SENSING}_{code}_{resolution}m.jp2"


def write_safe(
    folder: Path,
    dn: dict[str, np.ndarray],
    level: str = "L2A",
    baseline: str = "04.00",
    offsets: dict[str, float] | None = None,
    zipped: bool = False,
) -> Path:
    """Write a product holding the bands ``dn`` (digital numbers at each band's resolution).

    L2A products also get a 20 m copy of each 10 m band, as real ones have. ``offsets=None``
    leaves the offset list out of the metadata. Returns the ``.SAFE`` folder or the ``.zip``.
    """
    root = Path(folder) / f"{product_name(level, baseline)}.SAFE"
    (root / f"MTD_MSI{level}.xml").parent.mkdir(parents=True, exist_ok=True)
    (root / f"MTD_MSI{level}.xml").write_text(metadata_xml(level, baseline, offsets))
    for band, array in dn.items():
        resolution = RESOLUTION[band]
        _write_jp2(root / band_file(level, band, resolution), array, resolution)
        if level == "L2A" and resolution == 10:
            _write_jp2(root / band_file(level, band, 20), array[::2, ::2], 20)
    if not zipped:
        return root
    archive = root.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            out.write(file, file.relative_to(root.parent).as_posix())
    return archive
