"""A torch ``Dataset`` of fixed-size patches cut from the scenes of a :class:`DataSource`.

Every scene is cut into a row-major grid of ``patch_size`` windows; edge patches are padded and
the padding is invalid. Windows are read lazily with rasterio, so scenes of any size work. The
grids of each sample's partner files are checked once, when the dataset is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from sarfuse import superpixels as sp  # a module: superpixels imports sarfuse.data itself
from sarfuse.data.bands import DEFAULT_S1_BANDS, DEFAULT_S2_BANDS, canonical_bands, resolve_bands
from sarfuse.data.indices import compute_indices, required_bands
from sarfuse.data.layouts import DataSource, Sample
from sarfuse.data.normalise import Normaliser
from sarfuse.data.raster import (
    RasterInfo,
    S1Units,
    check_grids,
    patch_windows,
    raster_info,
    read_label,
    read_s1,
    read_s2,
    s2_band_names,
)
from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError


class PatchDataset(Dataset):
    """Patches of ``source`` as ``dict`` items (P = ``patch_size``)::

        s1 (C1, P, P) float32 normalised     s2 (C2, P, P) float32 normalised
        valid (P, P) bool                    label (P, P) int64, IGNORE_INDEX = ignore or invalid
        indices (K, P, P) float32 raw        segments (P, P) or (S, P, P) int64
        path str (the sample's first file)   window (row, col) of the patch in its scene

    Keys of an absent sensor, label, index list or superpixel setting are left out. Sensor
    values are 0 where ``valid`` is False (NaN, nodata, padding).
    """

    def __init__(
        self,
        source: DataSource,
        patch_size: int,
        s1_bands: Sequence[str] = DEFAULT_S1_BANDS,
        s2_bands: Sequence[str] = DEFAULT_S2_BANDS,
        normaliser: Normaliser | None = None,
        indices: Sequence[str] = (),
        superpixels: sp.SuperpixelParams | Sequence[sp.SuperpixelParams] | None = None,
        reproject: bool = False,
        s1_units: S1Units = "auto",
    ) -> None:
        bands = {"s1": canonical_bands(s1_bands, "s1"), "s2": canonical_bands(s2_bands, "s2")}
        self.source = source
        self.patch_size = patch_size
        self.sensors = tuple(s for s in source.sensors if bands[s])
        self.s1_bands = bands["s1"] if "s1" in self.sensors else ()
        self.s2_bands = bands["s2"] if "s2" in self.sensors else ()
        self.normaliser = normaliser or Normaliser()
        self.indices = tuple(indices)
        needed = required_bands(self.indices)
        for sensor in (s for s in needed if needed[s] and s not in source.sensors):
            raise SarfuseError(
                source.root, f"the indices {self.indices} need {sensor.upper()} data"
            )
        self._read_sensors = tuple(s for s in source.sensors if s in self.sensors or needed[s])
        if not self._read_sensors:
            raise SarfuseError(source.root, f"no bands to read: the data has {source.sensors}")
        self._s2_read = self.s2_bands + tuple(b for b in needed["s2"] if b not in self.s2_bands)
        self.superpixels = superpixels
        self.reproject = reproject
        self.s1_units = s1_units
        self._grids: list[RasterInfo] = []
        self._targets: list[dict[str, RasterInfo | None]] = []
        for sample in source.samples:
            self._prepare(sample)
        self._check_s2_bands()
        self.patches: list[tuple[int, Window]] = [
            (i, window)
            for i, grid in enumerate(self._grids)
            for window in patch_windows(grid.height, grid.width, patch_size)
        ]

    def _check_s2_bands(self) -> None:
        """Fail early, naming the file, when the first sample lacks a requested S2 band."""
        if "s2" not in self._read_sensors or not self.source.samples:
            return
        first = self.source.samples[0].s2
        available = tuple(first) if isinstance(first, dict) else s2_band_names(first)
        try:
            resolve_bands(self._s2_read, "s2", available)
        except SarfuseError as err:
            raise SarfuseError(first_file(self.source.samples[0]), err.problem) from None

    def _roles(self) -> list[str]:
        return [*self._read_sensors, *(["label"] if self.source.has_labels else [])]

    def _prepare(self, sample: Sample) -> None:
        """Record the sample's grid and which partners must be warped onto it."""
        first, *others = self._roles()
        grid = raster_info(sample.get(first))
        targets: dict[str, RasterInfo | None] = {first: None}
        for role in others:
            path = sample.get(role)
            info = raster_info(path)
            aligned = check_grids(grid, info, sample.get(first), path, reproject=self.reproject)
            targets[role] = None if aligned else grid
        self._grids.append(grid)
        self._targets.append(targets)

    @property
    def scene_shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every sample's scene, in sample order."""
        return [grid.shape for grid in self._grids]

    def __len__(self) -> int:
        return len(self.patches)

    def grid(self, sample_index: int) -> RasterInfo:
        """The georeferenced grid of a sample's scene (the first partner's)."""
        return self._grids[sample_index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | tuple[int, int]]:
        i, window = self.patches[index]
        return self.read_window(i, window, pad=True)

    def read_window(
        self, sample_index: int, window: Window, pad: bool = False
    ) -> dict[str, torch.Tensor | str | tuple[int, int]]:
        """The item of any ``window`` of a sample's scene; ``pad`` pads it to the patch size.

        Used by ``__getitem__`` for the patch grid and by whole-scene mapping for its tiles.
        """
        sample, targets = self.source.samples[sample_index], self._targets[sample_index]
        shape = (self.patch_size,) * 2 if pad else (int(window.height), int(window.width))
        valid = _pad(np.ones((int(window.height), int(window.width)), bool), shape, False)
        raw: dict[str, np.ndarray] = {}
        if "s1" in self._read_sensors:
            data, ok = read_s1(sample.s1, window, self.s1_units, targets["s1"])  # type: ignore[arg-type]
            raw["s1"], valid = _pad(data, shape, 0.0), valid & _pad(ok, shape, False)
        if "s2" in self._read_sensors:
            data, ok = read_s2(
                sample.s2,
                self._s2_read,
                window,
                targets["s2"],
                sample.s2_offset,  # type: ignore[arg-type]
            )
            raw["s2"], valid = _pad(data, shape, 0.0), valid & _pad(ok, shape, False)
        for data in raw.values():
            data[:, ~valid] = 0.0
        item: dict[str, torch.Tensor | str | tuple[int, int]] = {}
        if "s1" in self.sensors:
            s1 = raw["s1"][[("VV", "VH").index(b) for b in self.s1_bands]]
            item["s1"] = _masked(self.normaliser.apply_s1(s1, self.s1_bands), valid)
        if "s2" in self.sensors:
            s2 = raw["s2"][: len(self.s2_bands)]
            item["s2"] = _masked(self.normaliser.apply_s2(s2, self.s2_bands), valid)
        item["valid"] = torch.from_numpy(valid)
        if self.source.has_labels and self.source.scheme is not None:
            label = read_label(sample.label, self.source.scheme, window, targets["label"])  # type: ignore[arg-type]
            label = _pad(label, shape, IGNORE_INDEX)
            label[~valid] = IGNORE_INDEX
            item["label"] = torch.from_numpy(label)
        if self.indices:
            planes = compute_indices(
                self.indices, s1=raw.get("s1"), s2=raw.get("s2"), s2_bands=self._s2_read
            )
            item["indices"] = _masked(planes, valid)
        if self.superpixels is not None:
            item["segments"] = torch.from_numpy(self._segments(sample, raw, valid, window))
        item["path"] = str(first_file(sample))
        item["window"] = (int(window.row_off), int(window.col_off))
        return item

    def segments_cached(self, index: int) -> bool:
        """Whether every superpixel segmentation of patch ``index`` is cached (nothing is read)."""
        if self.superpixels is None:
            return False
        i, window = self.patches[index]
        sample, shape = self.source.samples[i], (self.patch_size, self.patch_size)
        key = sp.cache_key(
            [sample.s1, sample.s2], (int(window.row_off), int(window.col_off), *shape)
        )
        params = self.superpixels
        scales = [params] if isinstance(params, sp.SuperpixelParams) else list(params)
        has = {s: s in self._read_sensors for s in ("s1", "s2")}
        return all(sp.is_cached(key, p, has["s1"], has["s2"], self._s2_read, shape) for p in scales)

    def _segments(
        self, sample: Sample, raw: dict[str, np.ndarray], valid: np.ndarray, window: Window
    ) -> np.ndarray:
        """Superpixels of the patch (P, P), or (S, P, P) for a list of parameter sets."""
        key = sp.cache_key(
            [sample.s1, sample.s2], (int(window.row_off), int(window.col_off), *valid.shape)
        ) + (f"|offset={sample.s2_offset}" if sample.s2_offset else "")
        params = self.superpixels
        scales = [params] if isinstance(params, sp.SuperpixelParams) else list(params or [])
        segments = [
            sp.patch_segments(raw.get("s1"), raw.get("s2"), self._s2_read, valid, p, key)
            for p in scales
        ]
        return segments[0] if isinstance(params, sp.SuperpixelParams) else np.stack(segments)


def _pad(array: np.ndarray, shape: tuple[int, int], fill: float | bool | int) -> np.ndarray:
    """Pad the last two axes of ``array`` at the bottom/right to ``shape`` with ``fill``."""
    height, width = array.shape[-2:]
    if (height, width) == shape:
        return array
    out = np.full((*array.shape[:-2], *shape), fill, dtype=array.dtype)
    out[..., :height, :width] = array
    return out


def _masked(array: np.ndarray, valid: np.ndarray) -> torch.Tensor:
    """float32 tensor (C, P, P) of ``array`` with invalid pixels set to 0."""
    out = np.where(valid, array, 0.0).astype(np.float32)
    return torch.from_numpy(out)


def first_file(sample: Sample) -> Path:
    for role in ("s1", "s2", "label"):
        value = sample.get(role)
        if isinstance(value, dict):
            return next(iter(value.values()))
        if value is not None:
            return value
    raise SarfuseError(None, f"sample {sample.name} has no files")
