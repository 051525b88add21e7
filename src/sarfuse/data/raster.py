"""All raster I/O of sarfuse, on rasterio: read S1/S2/labels with validity masks, check, write.

Readers return float32 ``(C, H, W)`` arrays plus a ``valid`` ``(H, W)`` mask; invalid pixels
(NaN, nodata, S2 all-zero, outside a reprojected footprint) are set to 0 so that no NaN leaks
into later maths, and every later step must respect ``valid``. ``window`` is a rasterio
``Window`` on the grid being read: the file's own grid, or ``target`` when reading a file onto
another file's grid (``--reproject``, rasterio warp). Bad input raises :class:`SarfuseError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from sarfuse.data.bands import S1_BANDS, S2_BANDS, S2_STACKS, band_name, resolve_bands
from sarfuse.data.gdal_errors import checked_writer
from sarfuse.data.offset import S2Offset, add_offset
from sarfuse.data.schemes import ClassScheme
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path

S1Units = Literal["auto", "db", "linear"]
BandFiles = Mapping[str, "str | Path"]
PathLike = str | Path
S2Source = PathLike | BandFiles

log = logging.getLogger(__name__)

_ALIGN_TOLERANCE = 0.01  # pixels: grids whose corners agree this closely are the same grid
_LINEAR_MAX = 10.0  # linear power backscatter rarely exceeds this (99th percentile)


@dataclass(frozen=True)
class RasterInfo:
    """A pixel grid: CRS, affine transform and size."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @classmethod
    def make(
        cls,
        width: int,
        height: int,
        crs: str | CRS = "EPSG:32633",
        origin: tuple[float, float] = (500000.0, 5000000.0),
        resolution: float = 10.0,
    ) -> RasterInfo:
        """A north-up grid with its top-left corner at ``origin`` (default: UTM 33N, 10 m)."""
        transform = Affine(resolution, 0.0, origin[0], 0.0, -resolution, origin[1])
        return cls(CRS.from_user_input(crs), transform, width, height)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def sub(self, window: Window) -> RasterInfo:
        """The grid of ``window`` inside this grid (for writing tiles or reading onto a part)."""
        return RasterInfo(
            self.crs,
            self.transform @ Affine.translation(window.col_off, window.row_off),
            int(window.width),
            int(window.height),
        )


def is_gdal_url(path: PathLike) -> bool:
    """True for GDAL virtual paths (``/vsizip/``, ``/vsicurl/``) and URLs (``s3://``): GDAL opens
    them, the local file system cannot check them, and ``Path`` would mangle their slashes."""
    text = str(path)
    return text.startswith("/vsi") or "://" in text


def as_path(path: PathLike) -> PathLike:
    """A local file as a ``Path``; a GDAL virtual path or URL kept as the string it is."""
    return str(path) if is_gdal_url(path) else Path(path)


@contextmanager
def _open(path: PathLike) -> Iterator[DatasetReader]:
    """Open a raster, turning missing, unreadable and truncated files into one-line errors."""
    path = as_path(path)
    if isinstance(path, Path) and not path.exists():
        raise SarfuseError(path, "file not found")
    if isinstance(path, Path) and path.is_dir():
        raise SarfuseError(path, "is a folder, expected a raster file")
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE"):  # no listing of huge folders
            src = rasterio.open(path)
    except (RasterioError, OSError) as err:
        raise SarfuseError(path, f"not a raster file GDAL can read ({_first_line(err)})") from err
    try:
        with src:
            yield src
    except (RasterioError, OSError) as err:
        raise SarfuseError(path, f"truncated or corrupt raster: {_read_problem(err)}") from err


def _read_problem(err: Exception) -> str:
    """GDAL's reason for a failed read: "Read failed. See previous exception" points at the
    exception it chained, whose text says what is wrong with the file."""
    cause = err.__cause__ or err.__context__
    text = _first_line(err)
    if cause is not None and "previous exception" in text:
        return f"a block cannot be read ({_first_line(cause)})"
    return text


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _info(src: DatasetReader) -> RasterInfo:
    return RasterInfo(src.crs, src.transform, src.width, src.height)


def _band_files(source: BandFiles) -> dict[str, Path]:
    """Band-name -> file mapping with canonical names (``B02`` -> ``B2``)."""
    files: dict[str, Path] = {}
    for key, file in source.items():
        name = band_name(key)
        if name is None:
            raise SarfuseError(file, f"{key!r} is not a Sentinel-2 band name")
        files[name] = as_path(file)  # type: ignore[assignment]
    return files


def raster_info(source: S2Source) -> RasterInfo:
    """The grid of a raster file; for a band-per-file S2 source, the finest band's grid."""
    if isinstance(source, Mapping):
        infos = [raster_info(file) for file in _band_files(source).values()]
        return min(infos, key=lambda info: abs(info.transform.a * info.transform.e))
    with _open(source) as src:
        return _info(src)


def _describe(source: S2Source) -> str:
    """A path for messages; a band-per-file source is named by its folder."""
    if isinstance(source, Mapping):
        first = str(next(iter(source.values())))
        return first.rsplit("/", 1)[0] if is_gdal_url(first) else str(Path(first).parent)
    return str(source)


def grid_differences(a: RasterInfo, b: RasterInfo) -> list[str]:
    """What differs between two grids (CRS, shape, transform); empty when they line up."""
    diffs = []
    if a.crs != b.crs:
        diffs.append(f"CRS {_crs_name(a.crs)} vs {_crs_name(b.crs)}")
    if a.shape != b.shape:
        diffs.append(f"shape {a.height}x{a.width} vs {b.height}x{b.width}")
    corners = [(0, 0), (a.width, 0), (0, a.height), (a.width, a.height)]
    pixel = math.sqrt(abs(a.transform.determinant)) or 1.0
    shift = max(math.dist(a.transform @ corner, b.transform @ corner) / pixel for corner in corners)
    if shift > _ALIGN_TOLERANCE:
        ta, tb = a.transform, b.transform
        diffs.append(
            f"transform origin ({ta.c:.6g}, {ta.f:.6g}) vs ({tb.c:.6g}, {tb.f:.6g}), "
            f"pixel size ({ta.a:.6g}, {ta.e:.6g}) vs ({tb.a:.6g}, {tb.e:.6g})"
        )
    return diffs


def _crs_name(crs: CRS | None) -> str:
    if crs is None:
        return "none"
    return crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"


def check_aligned(a: S2Source, b: S2Source, *, reproject: bool = False) -> bool:
    """True when ``b`` lies on the grid of ``a``.

    Otherwise raises a :class:`SarfuseError` naming both files and what differs, unless
    ``reproject``: then returns False (read ``b`` with ``target=raster_info(a)``), and only
    raises when the two do not overlap at all.
    """
    return check_grids(raster_info(a), raster_info(b), a, b, reproject=reproject)


def check_grids(
    info_a: RasterInfo, info_b: RasterInfo, a: S2Source, b: S2Source, *, reproject: bool = False
) -> bool:
    """:func:`check_aligned` on grids already read (``a``, ``b`` name the files in messages)."""
    diffs = grid_differences(info_a, info_b)
    if not diffs:
        return True
    if not reproject:
        raise SarfuseError(
            _describe(b),
            f"does not line up with {_describe(a)}: {'; '.join(diffs)} "
            "(resample it onto the first file's grid, e.g. with gdalwarp)",
        )
    if info_a.crs is None or info_b.crs is None:
        raise SarfuseError(_describe(b), f"cannot reproject onto {_describe(a)}: missing CRS")
    if not _overlaps(info_a, info_b):
        raise SarfuseError(_describe(b), f"does not overlap {_describe(a)}, cannot reproject")
    return False


def _bounds(info: RasterInfo) -> tuple[float, float, float, float]:
    xs, ys = zip(*(info.transform @ c for c in [(0, 0), (info.width, info.height)]), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a: RasterInfo, b: RasterInfo) -> bool:
    left, bottom, right, top = transform_bounds(b.crs, a.crs, *_bounds(b))
    a_left, a_bottom, a_right, a_top = _bounds(a)
    return left < a_right and right > a_left and bottom < a_top and top > a_bottom


def _read(
    src: DatasetReader,
    indexes: Sequence[int],
    window: Window | None,
    target: RasterInfo | None,
    resampling: Resampling,
    dtype: str | None = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """Bands on the file's grid or warped onto ``target`` -> ((C, h, w), footprint (h, w))."""
    if target is None or not grid_differences(_info(src), target):
        data = src.read(list(indexes), window=window, out_dtype=dtype)
        return data, np.ones(data.shape[1:], dtype=bool)
    with WarpedVRT(
        src,
        crs=target.crs,
        transform=target.transform,
        width=target.width,
        height=target.height,
        resampling=resampling,
        add_alpha=True,
        dtype=dtype,  # interpolate in float: an integer warp rounds resampled bands
    ) as vrt:
        data = vrt.read(list(indexes), window=window, out_dtype=dtype)
        footprint = vrt.read(vrt.count, window=window) > 0
    return data, footprint


def _covers_all(window: Window | None, shape: tuple[int, int]) -> bool:
    if window is None:
        return True
    full = Window(0, 0, shape[1], shape[0])
    return tuple(map(int, window.flatten())) == tuple(map(int, full.flatten()))


def _require_valid(valid: np.ndarray, path: PathLike, whole: bool) -> None:
    """A whole file with no valid pixel is bad input (a window of one may be legitimately empty)."""
    if whole and not valid.any():
        raise SarfuseError(path, "all pixels are NaN/nodata")


def _nodata_mask(
    data: np.ndarray,
    nodata: float | None,
    path: PathLike | None = None,
    window: Window | None = None,
) -> np.ndarray:
    """(h, w) True where any band is NaN/inf or equals the file's nodata value.

    With ``path``, an infinite value raises instead: it is a broken file, not nodata, and the
    data check up front samples only a few windows of each file.
    """
    bad = ~np.isfinite(data).all(axis=0)
    if path is not None and bad.any():
        _refuse_infinite(data, path, window)
    if nodata is not None and not math.isnan(nodata):
        bad |= (data == nodata).any(axis=0)
    return bad


def _refuse_infinite(data: np.ndarray, path: PathLike, window: Window | None) -> None:
    """Raise naming the first infinite pixel of a read (called only when one is non-finite)."""
    if not np.isinf(data).any():
        return
    rows, cols = np.nonzero(np.isinf(data).any(axis=0))
    row0, col0 = (int(window.row_off), int(window.col_off)) if window is not None else (0, 0)
    raise SarfuseError(
        path,
        f"holds an infinite value at row {row0 + rows[0]}, col {col0 + cols[0]} (in a read "
        f"window of {data.shape[1]}x{data.shape[2]} at row {row0}, col {col0}); write invalid "
        "pixels as NaN/nodata",
    )


def _s1_indexes(src: DatasetReader, path: PathLike) -> list[int]:
    names = [band_name(d) if d else None for d in src.descriptions]
    if all(b in names for b in S1_BANDS):
        return [names.index(b) + 1 for b in S1_BANDS]
    if src.count != 2:
        raise SarfuseError(path, f"expected 2 Sentinel-1 bands (VV, VH), found {src.count}")
    return [1, 2]


def _probe_windows(height: int, width: int, n: int = 4, size: int = 64) -> list[Window]:
    """``n`` x ``n`` small windows spread evenly over a raster: a cheap sample of all of it
    (a few blocks read, where a decimated read of a big scene would decode every block)."""
    h, w = min(size, height), min(size, width)
    rows = np.unique(np.linspace(0, height - h, n).astype(int))
    cols = np.unique(np.linspace(0, width - w, n).astype(int))
    return [Window(int(c), int(r), w, h) for r in rows for c in cols]


@lru_cache(maxsize=1024)
def _detect_units(path: str, _stamp: tuple[int, int]) -> Literal["db", "linear"]:
    with _open(path) as src:
        parts = []
        for window in _probe_windows(src.height, src.width):
            sample = src.read(_s1_indexes(src, path), window=window, out_dtype="float32")
            parts.append(sample[:, ~_nodata_mask(sample, src.nodata)])
        values = np.concatenate(parts, axis=1)
    # dB backscatter is mostly negative; linear power is positive but for a few noise values
    # (thermal-noise removal), so the median decides, not the minimum
    if values.size == 0 or np.median(values) < 0:
        log.info("%s: S1 read as dB (its median is negative)", path)
        return "db"
    if np.percentile(values, 99) <= _LINEAR_MAX:
        log.info("%s: S1 read as linear power (no negative values, 99%% <= 10), turned to dB", path)
        return "linear"
    raise SarfuseError(
        path,
        f"cannot tell the S1 units: no negative values (so not dB) but values up to "
        f"{values.max():.4g} (too high for linear power); give the units explicitly",
    )


def detect_s1_units(path: PathLike) -> Literal["db", "linear"]:
    """``"db"`` when most values are negative, ``"linear"`` for power in [0, ~10].

    Decided once per file (from 16 small windows spread over it), so every window of a scene
    is converted the same way.
    """
    local = as_path(path)
    stat = local.stat() if isinstance(local, Path) and local.is_file() else None
    stamp = (stat.st_size, stat.st_mtime_ns) if stat else (0, 0)
    return _detect_units(str(path), stamp)


def read_s1(
    path: PathLike,
    window: Window | None = None,
    units: S1Units = "auto",
    target: RasterInfo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sentinel-1 VV, VH -> (float32 (2, h, w) backscatter in dB, valid (h, w) bool).

    Linear power is converted to dB (non-positive power is invalid).
    """
    if units not in ("auto", "db", "linear"):
        raise SarfuseError(path, f"S1 units must be auto, db or linear, got {units!r}")
    unit = detect_s1_units(path) if units == "auto" else units
    with _open(path) as src:
        data, footprint = _read(src, _s1_indexes(src, path), window, target, Resampling.bilinear)
        valid = footprint & ~_nodata_mask(data, src.nodata, path, window)
        shape = (target or _info(src)).shape
    if unit == "linear":
        valid &= (data > 0).all(axis=0)
        data = 10.0 * np.log10(np.where(valid, data, 1.0), dtype=np.float32)
    data[:, ~valid] = 0.0
    _require_valid(valid, path, _covers_all(window, shape))
    return data, valid


def band_descriptions(path: PathLike) -> tuple[str | None, ...]:
    """One entry per band: its canonical band name from the file's descriptions, else None."""
    with _open(path) as src:
        return tuple(band_name(d) if d else None for d in src.descriptions)


def s2_band_names(path: PathLike) -> tuple[str, ...]:
    """The bands of an S2 stack file: from its band descriptions, else from its band count."""
    names = band_descriptions(path)
    count = len(names)
    if all(n is not None and n not in S1_BANDS for n in names) and len(set(names)) == count:
        return names
    if count not in S2_STACKS:
        raise SarfuseError(
            path,
            f"expected a Sentinel-2 stack of 13 bands (B1..B12 with B8A), 12 (L2A, no B10), "
            f"10 or 4 bands, found {count}; or name the bands in the file's band descriptions",
        )
    return S2_STACKS[count]


def read_s2(
    source: S2Source,
    bands: Sequence[str] | None = None,
    window: Window | None = None,
    target: RasterInfo | None = None,
    offset: S2Offset = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sentinel-2 ``bands`` -> (float32 (C, h, w) reflectance x 10000, valid (h, w) bool).

    ``bands`` default: every band the source has, in stack order (B1..B12 for 13-band files).
    ``offset`` (one value or one per band, e.g. -1000 from processing baseline 04.00 on) is
    added to the digital numbers of valid pixels, after 0 = nodata is recognised.

    ``source`` is a stack file or a band-name -> file mapping (BigEarthNet); bands stored at
    20/60 m are resampled bilinearly onto the finest band's grid (or ``target``). A pixel
    whose bands are all 0 is nodata.
    """
    if isinstance(source, Mapping):
        files = _band_files(source)
        grid = target or raster_info(files)
        parts = []
        have = tuple(b for b in S2_BANDS if b in files)
        names = _checked(have if bands is None else bands, have, _describe(source))
        for name in names:
            with _open(files[name]) as src:
                data, footprint = _read(src, [1], window, grid, Resampling.bilinear)
                nodata = _nodata_mask(data, _s2_nodata(src.nodata), files[name], window)
                parts.append((data, footprint & ~nodata))
        data = np.concatenate([p[0] for p in parts])
        valid = np.logical_and.reduce([ok for _, ok in parts])
    else:
        available = s2_band_names(source)
        names = _checked(available if bands is None else bands, available, source)
        indexes = [available.index(b) + 1 for b in names]
        with _open(source) as src:
            data, footprint = _read(src, indexes, window, target, Resampling.bilinear)
            valid = footprint & ~_nodata_mask(data, _s2_nodata(src.nodata), source, window)
            grid = target or _info(src)
    valid &= (data != 0).any(axis=0)
    data = add_offset(data, names, offset)
    data[:, ~valid] = 0.0
    _require_valid(valid, _describe(source), _covers_all(window, grid.shape))
    return data, valid


def _s2_nodata(nodata: float | None) -> float | None:
    """A file's S2 nodata value, except 0: 0 is handled as 'all bands zero' so dark pixels stay."""
    return None if nodata == 0 else nodata


def _checked(bands: Sequence[str], available: Sequence[str], path: PathLike) -> list[str]:
    """Canonical names of ``bands``, raising with ``path`` when one is unknown or missing."""
    try:
        return [available[i] for i in resolve_bands(bands, "s2", available)]
    except SarfuseError as err:
        raise SarfuseError(path, err.problem) from None


def read_label(
    path: PathLike,
    scheme: ClassScheme,
    window: Window | None = None,
    target: RasterInfo | None = None,
    band: int = 1,
) -> np.ndarray:
    """Label band -> int64 (h, w) class indices ``0..K-1`` of ``scheme``, IGNORE_INDEX = ignore.

    Nodata, NaN and pixels outside a reprojected footprint are ignored; values outside the
    scheme raise :class:`SarfuseError`.
    """
    with _open(path) as src:
        if band > src.count:
            raise SarfuseError(path, f"expected a label band {band}, found {src.count} band(s)")
        raw, footprint = _read(src, [band], window, target, Resampling.nearest, dtype=None)
        ignore = ~footprint | _nodata_mask(raw, src.nodata)
    return scheme.encode(raw[0], path=path, ignore=ignore)


def patch_windows(height: int, width: int, size: int) -> list[Window]:
    """Row-major grid of ``size`` x ``size`` windows covering the raster; edge ones are smaller."""
    if size < 1:
        raise SarfuseError(None, f"patch size must be >= 1, got {size}")
    return [
        Window(col, row, min(size, width - col), min(size, height - row))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]


@contextmanager
def open_writer(
    path: PathLike,
    info: RasterInfo,
    count: int,
    dtype: str | np.dtype,
    *,
    nodata: float | None = None,
    colormap: Mapping[int, Sequence[int]] | None = None,
    tags: Mapping[str, object] | None = None,
    band_names: Sequence[str] | None = None,
) -> Iterator[DatasetWriter]:
    """Open a tiled, deflate-compressed GeoTIFF for (windowed) writing, atomically.

    Data goes to a temporary file next to ``path`` that replaces ``path`` only when the block
    exits without error and GDAL wrote every block, so an interrupted run or a full disk never
    leaves a half-written map.
    """
    if colormap is not None and (count != 1 or np.dtype(dtype) not in (np.uint8, np.uint16)):
        raise SarfuseError(path, "a colour table needs a single uint8 or uint16 band")
    if band_names is not None and len(band_names) != count:
        raise SarfuseError(path, f"{len(band_names)} band names given for {count} bands")
    profile = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": count,
        "dtype": np.dtype(dtype).name,
        "crs": info.crs,
        "transform": info.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with (
        atomic_path(path, suffix=".tif") as tmp,
        checked_writer(rasterio.open(tmp, "w", **profile), path) as dst,
    ):
        if colormap is not None:
            dst.write_colormap(1, {int(k): tuple(v) for k, v in colormap.items()})
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, name in enumerate(band_names or (), start=1):
            dst.set_band_description(i, name)
        yield dst


def write_geotiff(
    path: PathLike,
    array: np.ndarray,
    info: RasterInfo,
    *,
    nodata: float | None = None,
    colormap: Mapping[int, Sequence[int]] | None = None,
    tags: Mapping[str, object] | None = None,
    band_names: Sequence[str] | None = None,
) -> Path:
    """Write ``array`` (C, H, W) or (H, W) on grid ``info`` as a GeoTIFF, atomically."""
    array = np.asarray(array)
    data = array[None] if array.ndim == 2 else array
    if data.ndim != 3 or data.shape[1:] != info.shape:
        raise SarfuseError(path, f"array of shape {array.shape} does not fit a {info.shape} grid")
    with open_writer(
        path,
        info,
        data.shape[0],
        data.dtype,
        nodata=nodata,
        colormap=colormap,
        tags=tags,
        band_names=band_names,
    ) as dst:
        dst.write(data)
    return Path(path)
