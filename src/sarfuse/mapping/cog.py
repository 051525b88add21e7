"""Cloud Optimized GeoTIFF outputs: a finished map rewritten in COG layout with overviews.

A COG keeps its header and overviews (smaller copies) ahead of the full-resolution tiles, so
QGIS and web viewers draw it zoomed out without reading every pixel, and a server can serve it
by HTTP range requests. Classes are reduced with ``MODE`` (the most frequent class of each
block: an average of class numbers is another, wrong class); probabilities with ``AVERAGE``.

GDAL's COG driver builds the overviews block by block from the tiled GeoTIFF that
:func:`sarfuse.mapping.inference.map_scene` wrote, with its block cache capped
(:data:`COG_CACHE_BYTES`), so memory stays flat in the scene's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import rasterio
import rasterio.shutil

from sarfuse.data.schemes import IGNORE_INDEX, ClassScheme
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path
from sarfuse.mapping import qgis

CLASS_RESAMPLING = "MODE"
PROBA_RESAMPLING = "AVERAGE"
COG_CACHE_BYTES = 32 * 2**20  # GDAL block cache while the overviews are built
BLOCK = 256  # tile side of the COG (and of its overviews)


def to_cog(path: str | Path, resampling: str) -> Path:
    """Rewrite the GeoTIFF at ``path`` in place as a COG with overviews made by ``resampling``.

    The COG is written next to ``path`` and replaces it only when complete. Colour table, tags,
    band descriptions and nodata are carried over by GDAL's copy.
    """
    path = Path(path)
    try:
        with (
            atomic_path(path, suffix=".tif") as tmp,
            rasterio.Env(GDAL_CACHEMAX=COG_CACHE_BYTES),
        ):
            rasterio.shutil.copy(
                path, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK,
                OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER",
            )  # fmt: skip
    except rasterio.errors.RasterioError as err:
        raise SarfuseError(path, f"cannot write it as a Cloud Optimized GeoTIFF ({err})") from None
    return path


def publish_map(
    map_path: str | Path,
    scheme: ClassScheme,
    probabilities_path: str | Path | None = None,
    nodata: int = IGNORE_INDEX,
    cog: bool = True,
) -> dict[str, str]:
    """Turn the written class map (and probabilities) into what a GIS opens well.

    With ``cog`` both rasters become COGs; beside the class map go the category names and
    attribute table GDAL reads (``<map>.tif.aux.xml``) and QGIS's style (``<map>.qml``, loaded
    by QGIS with the layer). Returns the paths of the side files.
    """
    map_path = Path(map_path)
    if cog:
        to_cog(map_path, CLASS_RESAMPLING)
        if probabilities_path is not None:
            to_cog(probabilities_path, PROBA_RESAMPLING)
    names: Sequence[str] = list(scheme.names)
    colors = [c.rgb for c in scheme.classes]
    return {
        "categories": str(qgis.write_pam(map_path, names, colors, nodata)),
        "style": str(qgis.write_qml(map_path, names, colors)),
    }
