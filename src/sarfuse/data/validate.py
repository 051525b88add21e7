"""One check of a data source before any work, shared by every command that reads data.

Bad input must stop at the first reader with one line naming the file, not deep inside
training: every file exists and opens as a raster, band counts fit its sensor, the partners of
a sample (S1, S2, label) lie on one grid, values are plausible (S2 not all zero, S1 not all
NaN, no infinite values) and labels fit the class scheme. Values are read from a few small
windows per file (a full decimated read only when those hold no valid pixel), and from at most
:data:`MAX_VALUE_CHECKS` files spread over a large dataset, so the check stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from tqdm.auto import tqdm

from sarfuse.data.band_order import band_order_problem
from sarfuse.data.layouts import SENSORS, DataSource, Sample
from sarfuse.data.raster import (
    RasterInfo,
    _open,
    _probe_windows,
    _s1_indexes,
    check_grids,
    raster_info,
    s2_band_names,
)
from sarfuse.data.schemes import ClassScheme
from sarfuse.errors import SarfuseError, warn
from sarfuse.io_utils import local_stamp

MAX_VALUE_CHECKS = 256  # files whose values are sampled; structure is checked for all
_DECIMATED = 512  # side of the whole-file read used when the sample windows are all invalid


def labels_name(source: DataSource) -> str:
    """What to name in a message about the labels: the label file of a single sample, else the
    dataset's folder."""
    if len(source.samples) == 1 and source.samples[0].label is not None:
        return str(source.samples[0].label)
    return str(source.root)


def without_labels(source: DataSource) -> DataSource:
    """``source`` with its labels dropped: pretraining and statistics never read them."""
    samples = [replace(s, label=None) for s in source.samples]
    return DataSource(source.layout, samples, None, source.root)


def validate_source(source: DataSource, labels: bool, progress: bool = True) -> DataSource:
    """Check ``source`` (see the module doc) and return it; raise :class:`SarfuseError` naming
    the first bad file. ``labels``: the command reads labels (else they must be dropped first).
    """
    if not source.samples:
        raise SarfuseError(source.root, "no samples found")
    if labels and (source.scheme is None or not source.has_labels):
        raise SarfuseError(source.root, "this command needs labels, and this data has none")
    roles = [*(s for s in SENSORS if s in source.sensors), *(["label"] if labels else [])]
    picked = set(_spread(len(source.samples), MAX_VALUE_CHECKS))
    usable = 0
    bar = tqdm(
        source.samples, desc="checking data", unit="sample", leave=False,
        disable=not progress or len(source.samples) < 200,
    )  # fmt: skip
    for i, sample in enumerate(bar):
        try:
            grids = {role: _grid(sample.get(role)) for role in roles}
            _check_partners(sample, grids, roles)
            if i in picked:
                usable += _check_values(sample, roles, source.scheme, grids)
        except SarfuseError as err:
            if not sample.origin:
                raise
            raise SarfuseError(err.path, f"{err.problem} (listed in {sample.origin})") from None
    if usable == 0 and any(s in roles for s in SENSORS):
        only = len(source.samples) == 1
        raise SarfuseError(
            sample_file(source.samples[0], roles[0]) if only else source.root,
            f"{'no' if only else 'no sample has a'} valid pixel (all NaN/nodata or all zero)",
        )
    _warn_without_crs(source.samples[0], roles)
    return source


def _spread(n: int, k: int) -> list[int]:
    """Up to ``k`` indices spread evenly over ``range(n)``, first and last included."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, k))})


def _grid(value) -> RasterInfo:
    """The grid of a role's file (opens it: a missing or non-raster file fails here)."""
    return raster_info(value)


def _check_partners(sample: Sample, grids: dict[str, RasterInfo], roles: list[str]) -> None:
    """Band counts fit each sensor and every partner lies on the first one's grid."""
    for role in roles:
        _check_bands(role, sample.get(role))
    first = roles[0]
    for role in roles[1:]:
        check_grids(grids[first], grids[role], sample.get(first), sample.get(role))


def _check_bands(role: str, value) -> None:
    if role == "s2":
        if not isinstance(value, dict):
            s2_band_names(value)
        return
    with _open(value) as src:
        if role == "s1":
            _s1_indexes(src, value)
        elif src.count < 1:
            raise SarfuseError(value, "a label file needs at least one band")


def _files(value) -> Iterable[Path]:
    return value.values() if isinstance(value, dict) else [value]


def _check_values(
    sample: Sample, roles: list[str], scheme: ClassScheme | None, grids: dict
) -> bool:
    """Plausible values in every file of ``sample``; True when its sensors have a valid pixel."""
    usable = True
    for role in roles:
        if role == "label":
            _check_labels(sample.label, scheme, grids["label"])
            continue
        for path in _files(sample.get(role)):
            size, mtime = local_stamp(path) or (0, 0)  # a virtual path: cached by path alone
            if not _file_has_data(str(path), role, size, mtime):
                usable = False
            elif role == "s2" and not isinstance(sample.s2, dict):
                hint = _band_order_hint(str(path), size, mtime)
                if hint:
                    warn(path, hint)
    if not usable:
        warn(sample_file(sample, roles[0]), "no valid pixel (all NaN/nodata or all zero); skipped")
    return usable


def sample_file(sample: Sample, role: str) -> str:
    """A sample's file of ``role`` for messages (its name for a band-per-file source)."""
    value = sample.get(role)
    return sample.name if isinstance(value, dict) else str(value)


def _sample_windows(src, windows: list[Window], indexes: list[int]) -> np.ndarray:
    """Pixels (C, N) of the windows, as float64."""
    parts = [src.read(indexes, window=w, out_dtype="float64") for w in windows]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def _valid_pixels(values: np.ndarray, nodata: float | None, role: str) -> np.ndarray:
    """(N,) True where a pixel holds data: not NaN/nodata; for S2 not all bands zero."""
    ok = ~np.isnan(values).any(axis=0)
    if nodata is not None and not np.isnan(nodata) and not (role == "s2" and nodata == 0):
        ok &= ~(values == nodata).any(axis=0)
    if role == "s2":
        ok &= (values != 0).any(axis=0)
    return ok


@lru_cache(maxsize=4096)
def _file_has_data(path: str, role: str, _size: int, _mtime: int) -> bool:
    """Raise on infinite values; False when the file holds no valid pixel at all."""
    with _open(path) as src:
        indexes = _s1_indexes(src, path) if role == "s1" else list(range(1, src.count + 1))
        values = _sample_windows(src, _probe_windows(src.height, src.width), indexes)
        if np.isinf(values).any():
            raise SarfuseError(path, "holds infinite values; write invalid pixels as NaN/nodata")
        if _valid_pixels(values, src.nodata, role).any():
            return True
        scale = max(1, int(np.ceil(max(src.height, src.width) / _DECIMATED)))
        shape = (len(indexes), max(1, src.height // scale), max(1, src.width // scale))
        whole = src.read(indexes, out_shape=shape, out_dtype="float64")
    return bool(_valid_pixels(whole.reshape(len(indexes), -1), src.nodata, role).any())


@lru_cache(maxsize=4096)
def _band_order_hint(path: str, _size: int, _mtime: int) -> str | None:
    """A hint when an S2 stack's bands seem out of order (reversed, shuffled): spectral
    relations every real scene meets fail on its sampled pixels (:mod:`sarfuse.data.band_order`)."""
    names = s2_band_names(path)
    with _open(path) as src:
        values = _sample_windows(
            src, _probe_windows(src.height, src.width), list(range(1, len(names) + 1))
        )
        values = values[:, _valid_pixels(values, src.nodata, "s2")]
    problem = band_order_problem(values, names)
    if problem is None:
        return None
    order = ",".join(names)
    return (
        f"the bands look out of order: {problem}. Are they in the order {order}? Name them "
        "in the file's band descriptions if not"
    )


def _check_labels(path: Path, scheme: ClassScheme | None, grid: RasterInfo) -> None:
    """Label values of sample windows fit ``scheme`` (raises naming the file otherwise)."""
    from sarfuse.data.raster import read_label

    for window in _probe_windows(grid.height, grid.width):
        read_label(path, scheme, window)


def _warn_without_crs(sample: Sample, roles: list[str]) -> None:
    if raster_info(sample.get(roles[0])).crs is None:
        warn(sample_file(sample, roles[0]), "has no CRS: outputs will not be georeferenced")
