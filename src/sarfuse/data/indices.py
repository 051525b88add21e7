"""Spectral and SAR indices as pure functions, on numpy arrays or torch tensors alike.

Inputs are raw values: S1 backscatter in dB, S2 reflectance (any common scale, the ratios do not
depend on it). Division is safe: where a denominator is 0 (e.g. invalid pixels set to 0) the
index is 0. Each function takes band arrays of equal shape and returns float32 of that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from sarfuse.data.bands import DEFAULT_S2_BANDS, S1_BANDS, SENSOR_BANDS, canonical_bands
from sarfuse.errors import SarfuseError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

DEFAULT_INDICES = ("mean_sar", "ndvi", "ndwi", "dbsi")  # appended to the probe's features


def _float(x: Array) -> Array:
    return x.float() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def normalised_difference(a: Array, b: Array) -> Array:
    """``(a - b) / (a + b)``, 0 where ``a + b == 0``."""
    a, b = _float(a), _float(b)
    den = a + b
    zero = den == 0
    return (a - b) / (den + zero) * ~zero


def mean_sar(vv: Array, vh: Array) -> Array:
    """Mean backscatter ``(VV + VH) / 2`` in dB."""
    return (_float(vv) + _float(vh)) / 2


def ndvi(b4: Array, b8: Array) -> Array:
    """Normalised difference vegetation index ``(B8 - B4) / (B8 + B4)``."""
    return normalised_difference(b8, b4)


def ndwi(b3: Array, b8: Array) -> Array:
    """McFeeters' normalised difference water index ``(B3 - B8) / (B3 + B8)``."""
    return normalised_difference(b3, b8)


def ndbi(b8: Array, b11: Array) -> Array:
    """Normalised difference built-up index ``(B11 - B8) / (B11 + B8)``."""
    return normalised_difference(b11, b8)


def dbsi(b3: Array, b4: Array, b8: Array, b11: Array) -> Array:
    """Dry bare-soil index ``(B11 - B3) / (B11 + B3) - NDVI``."""
    return normalised_difference(b11, b3) - ndvi(b4, b8)


@dataclass(frozen=True)
class IndexDef:
    """An index function and the bands it takes, in argument order."""

    function: Callable[..., np.ndarray | torch.Tensor]
    bands: tuple[str, ...]

    @property
    def sensor(self) -> str:
        return "s1" if self.bands[0] in S1_BANDS else "s2"


INDICES: dict[str, IndexDef] = {
    "mean_sar": IndexDef(mean_sar, ("VV", "VH")),
    "ndvi": IndexDef(ndvi, ("B4", "B8")),
    "ndwi": IndexDef(ndwi, ("B3", "B8")),
    "ndbi": IndexDef(ndbi, ("B8", "B11")),
    "dbsi": IndexDef(dbsi, ("B3", "B4", "B8", "B11")),
}


def index_def(name: str) -> IndexDef:
    """The registered index ``name`` (case-insensitive), or a clear error."""
    try:
        return INDICES[name.lower()]
    except KeyError:
        known = ", ".join(INDICES)
        raise SarfuseError(None, f"unknown index {name!r} (known: {known})") from None


def required_bands(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The S1 and S2 bands needed for ``names``: ``{"s1": (...), "s2": (...)}`` in stack order."""
    needed: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for name in names:
        spec = index_def(name)
        needed[spec.sensor].update(spec.bands)
    return {s: tuple(b for b in SENSOR_BANDS[s] if b in needed[s]) for s in needed}


def available_indices(names: Sequence[str], sensors: Sequence[str]) -> tuple[str, ...]:
    """``names`` without the indices whose sensor is absent, so S1-only and S2-only data
    work with the default indices."""
    return tuple(
        n for n in names if all(s in sensors for s, b in required_bands((n,)).items() if b)
    )


def compute_indices(
    names: Sequence[str],
    s1: Array | None = None,
    s2: Array | None = None,
    s2_bands: Sequence[str] = DEFAULT_S2_BANDS,
    s1_bands: Sequence[str] = S1_BANDS,
) -> Array:
    """Stack the indices ``names`` -> float32 (K, H, W) (numpy or torch, like the inputs).

    ``s1`` (C1, H, W) in dB with bands ``s1_bands``; ``s2`` (C2, H, W) reflectance with bands
    ``s2_bands``. Raises when an index needs a sensor or band that is not given.
    """
    sources = {
        "s1": (s1, canonical_bands(s1_bands, "s1")),
        "s2": (s2, canonical_bands(s2_bands, "s2")),
    }
    planes = []
    for name in names:
        spec = index_def(name)
        data, have = sources[spec.sensor]
        absent = [b for b in spec.bands if b not in have]
        if data is None or absent:
            what = spec.sensor.upper() if data is None else f"band(s) {', '.join(absent)}"
            raise SarfuseError(None, f"index {name} needs {what}, which is not available")
        planes.append(spec.function(*(data[have.index(b)] for b in spec.bands)))
    reference = s1 if s1 is not None else s2
    if not planes:
        if reference is None:
            raise SarfuseError(None, "no indices asked for and no data given")
        shape = tuple(reference.shape[-2:])
        if isinstance(reference, torch.Tensor):
            return torch.zeros((0, *shape), device=reference.device)
        return np.zeros((0, *shape), np.float32)
    if isinstance(planes[0], torch.Tensor):
        return torch.stack(planes)
    return np.stack(planes).astype(np.float32)
