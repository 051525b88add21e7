"""Normalisation as in the paper: clip (S1 to [-25, 0] dB, S2 to [0, 10000]), then standardise.

Statistics are per band, by name: the paper's DFC2020 values (:data:`PAPER_STATS`) or values
computed over a dataset with :func:`compute_stats` (valid pixels only, after clipping). The
``stats`` dictionary (also the JSON format) is::

    {"clip": {"s1": [-25, 0], "s2": [0, 10000]},
     "s1": {"mean": {"VV": ..., "VH": ...}, "std": {...}, "count": n},
     "s2": {"mean": {"B2": ...}, "std": {...}, "count": n}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from sarfuse.data.bands import DEFAULT_S2_BANDS, S1_BANDS, canonical_bands
from sarfuse.data.layouts import DataSource
from sarfuse.data.raster import patch_windows, raster_info, read_s1, read_s2
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_write_text

Array = TypeVar("Array", np.ndarray, torch.Tensor)

S1_CLIP = (-25.0, 0.0)
S2_CLIP = (0.0, 10000.0)
_MIN_STD = 1e-6  # a constant band must not divide by zero
_BLOCK = 1024  # rows/cols read at a time by compute_stats (bounds memory on large scenes)

PAPER_STATS: dict[str, Any] = {
    "clip": {"s1": list(S1_CLIP), "s2": list(S2_CLIP)},
    "s1": {"mean": {"VV": -9.02, "VH": -15.73}, "std": {"VV": 3.58, "VH": 3.67}},
    "s2": {
        "mean": {
            "B1": 1550.0, "B2": 1353.0, "B3": 1265.0, "B4": 1269.0, "B5": 1480.0, "B6": 1900.0,
            "B7": 2150.0, "B8": 1976.0, "B8A": 2300.0, "B9": 750.0, "B10": 20.0, "B11": 1950.0,
            "B12": 1300.0,
        },
        "std": {
            "B1": 250.0, "B2": 242.0, "B3": 291.0, "B4": 403.0, "B5": 450.0, "B6": 550.0,
            "B7": 650.0, "B8": 517.0, "B8A": 700.0, "B9": 300.0, "B10": 20.0, "B11": 750.0,
            "B12": 650.0,
        },
    },
}  # fmt: skip
"""Per-band statistics of the paper (Chen & Bruzzone 2022) on DFC2020: S1 VV/VH and S2 B2, B3,
B4, B8 are the paper's values. The other S2 bands are *approximate* typical Sentinel-2 L1C
values (reflectance x 10000), given so that any band can be used without first running
``sarfuse stats``; compute statistics on your data when you use them."""


@dataclass(frozen=True)
class Normaliser:
    """Clip then standardise each band: ``(clip(x, lo, hi) - mean[band]) / std[band]``.

    Works on numpy arrays and torch tensors with bands on axis -3: (C, H, W) or (B, C, H, W).
    """

    s1_mean: Mapping[str, float] = field(default_factory=lambda: PAPER_STATS["s1"]["mean"])
    s1_std: Mapping[str, float] = field(default_factory=lambda: PAPER_STATS["s1"]["std"])
    s2_mean: Mapping[str, float] = field(default_factory=lambda: PAPER_STATS["s2"]["mean"])
    s2_std: Mapping[str, float] = field(default_factory=lambda: PAPER_STATS["s2"]["std"])
    s1_clip: tuple[float, float] = S1_CLIP
    s2_clip: tuple[float, float] = S2_CLIP

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> Normaliser:
        """From a stats dict; a sensor missing from it falls back to :data:`PAPER_STATS`."""
        s1 = stats.get("s1", PAPER_STATS["s1"])
        s2 = stats.get("s2", PAPER_STATS["s2"])
        clip = {**PAPER_STATS["clip"], **stats.get("clip", {})}
        return cls(
            s1["mean"], s1["std"], s2["mean"], s2["std"], tuple(clip["s1"]), tuple(clip["s2"])
        )

    def apply_s1(self, x: Array, bands: Sequence[str] = S1_BANDS) -> Array:
        """Normalise S1 backscatter in dB, (..., C, H, W) with C = len(bands)."""
        return _standardise(x, *self._moments("s1", bands), self.s1_clip)

    def apply_s2(self, x: Array, bands: Sequence[str] = DEFAULT_S2_BANDS) -> Array:
        """Normalise S2 reflectance x 10000, (..., C, H, W) with C = len(bands)."""
        return _standardise(x, *self._moments("s2", bands), self.s2_clip)

    def _moments(self, sensor: str, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mean, std = (self.s1_mean, self.s1_std) if sensor == "s1" else (self.s2_mean, self.s2_std)
        names = canonical_bands(bands, sensor)
        absent = [b for b in names if b not in mean or b not in std]
        if absent:
            raise SarfuseError(
                None,
                f"no normalisation statistics for band(s) {', '.join(absent)}; "
                "compute them with `sarfuse stats`",
            )
        return (
            np.array([mean[b] for b in names], dtype=np.float32),
            np.maximum(np.array([std[b] for b in names], dtype=np.float32), _MIN_STD),
        )


def _standardise(x: Array, mean: np.ndarray, std: np.ndarray, clip: tuple[float, float]) -> Array:
    """Clip ``x`` (..., C, H, W) to ``clip`` and standardise band c with mean[c], std[c]."""
    if x.shape[-3] != len(mean):
        raise SarfuseError(
            None, f"expected {len(mean)} bands on axis -3, got shape {tuple(x.shape)}"
        )
    if isinstance(x, torch.Tensor):
        x = x.float()
        m = torch.as_tensor(mean, device=x.device)[:, None, None]
        s = torch.as_tensor(std, device=x.device)[:, None, None]
        return (x.clamp(*clip) - m) / s
    return (
        (np.clip(x.astype(np.float32), *clip) - mean[:, None, None]) / std[:, None, None]
    ).astype(np.float32)


@dataclass
class _Moments:
    """Running count, mean and sum of squared deviations per band (Chan et al. merge)."""

    count: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def add(self, values: np.ndarray) -> None:
        """Merge a block of values (C, N) into the running moments (float64)."""
        n = values.shape[1]
        if n == 0:
            return
        values = values.astype(np.float64)
        mean_b = values.mean(axis=1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(axis=1)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean_b, m2_b
            return
        total = self.count + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n / total
        self.count = total

    def result(self, bands: Sequence[str]) -> dict[str, Any]:
        std = np.sqrt(self.m2 / self.count)
        return {
            "mean": {b: float(v) for b, v in zip(bands, self.mean, strict=True)},
            "std": {b: float(v) for b, v in zip(bands, std, strict=True)},
            "count": int(self.count),
        }


def compute_stats(
    source: DataSource,
    s1_bands: Sequence[str] = S1_BANDS,
    s2_bands: Sequence[str] = DEFAULT_S2_BANDS,
    progress: bool = True,
) -> dict[str, Any]:
    """Per-band mean/std over every valid pixel of ``source``, after clipping (streaming).

    Each scene is read in blocks, so memory stays bounded on large scenes. Returns the stats
    dict described in the module docstring, for the sensors ``source`` has.
    """
    bands = {"s1": canonical_bands(s1_bands, "s1"), "s2": canonical_bands(s2_bands, "s2")}
    clip = {"s1": S1_CLIP, "s2": S2_CLIP}
    moments = {sensor: _Moments() for sensor in source.sensors}
    for sample in tqdm(source.samples, desc="stats", unit="scene", disable=not progress):
        for sensor, acc in moments.items():
            path = sample.get(sensor)
            height, width = raster_info(path).shape
            for window in patch_windows(height, width, _BLOCK):
                if sensor == "s1":
                    data, valid = read_s1(path, window)
                    data = data[[S1_BANDS.index(b) for b in bands["s1"]]]
                else:
                    data, valid = read_s2(path, bands["s2"], window, offset=sample.s2_offset)
                acc.add(np.clip(data[:, valid], *clip[sensor]))
    stats: dict[str, Any] = {"clip": {k: list(v) for k, v in clip.items()}}
    for sensor, acc in moments.items():
        if acc.count == 0:
            raise SarfuseError(
                source.root, f"no valid {sensor.upper()} pixels to compute statistics"
            )
        stats[sensor] = acc.result(bands[sensor])
    return stats


def save_stats(stats: Mapping[str, Any], path: str | Path) -> Path:
    """Write a stats dict as JSON (atomically)."""
    return atomic_write_text(path, json.dumps(stats, indent=2) + "\n")


def load_stats(path: str | Path) -> dict[str, Any]:
    """Read and check a stats JSON written by :func:`save_stats`."""
    path = Path(path)
    if not path.is_file():
        raise SarfuseError(path, "statistics file not found")
    try:
        stats = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SarfuseError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from err
    if not isinstance(stats, dict) or not {"s1", "s2"} & set(stats):
        raise SarfuseError(path, "expected statistics for s1 and/or s2")
    for sensor in sorted({"s1", "s2"} & set(stats)):
        part = stats[sensor]
        if not (
            isinstance(part, dict)
            and isinstance(part.get("mean"), dict)
            and set(part["mean"]) == set(part.get("std") or {})
        ):
            raise SarfuseError(path, f"{sensor}: expected 'mean' and 'std' per band")
    return stats
