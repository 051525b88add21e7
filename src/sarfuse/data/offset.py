"""The Sentinel-2 radiometric offset of processing baseline 04.00 and later.

From 25 January 2022 (baseline 04.00) L1C and L2A digital numbers carry an offset: reflectance
x 10000 = DN + offset, with offset = -1000 for every band (``RADIO_ADD_OFFSET`` in L1C and
``BOA_ADD_OFFSET`` in L2A product metadata). Reading such a product without it makes every band
0.1 reflectance too bright. The rule sarfuse follows, in order:

1. the offset a product states in its metadata (a ``.SAFE`` product's ``MTD_MSIL*.xml``, a STAC
   asset's ``raster:bands`` offset);
2. for a product without offset entries, its processing baseline (>= 04.00: -1000, else 0);
3. for bare GeoTIFFs, which carry no metadata, ``--s2-offset`` (default 0: the GeoTIFF is taken
   as already corrected, as Sen1Floods11, SEN12MS, BigEarthNet and harmonised exports are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

S2Offset = float | Mapping[str, float] | None

BASELINE_OFFSET = -1000.0  # the offset products of baseline 04.00 and later use
OFFSET_BASELINE = (4, 0)  # the first processing baseline with an offset


def baseline_offset(baseline: str) -> float:
    """The offset a product of processing ``baseline`` (``"04.00"``, ``"N0400"``) carries."""
    digits = baseline.strip().upper().lstrip("N").replace(".", "")
    if not digits.isdigit() or len(digits) != 4:
        raise ValueError(f"not a processing baseline: {baseline!r}")
    major, minor = int(digits[:2]), int(digits[2:])
    return BASELINE_OFFSET if (major, minor) >= OFFSET_BASELINE else 0.0


def band_offsets(names: Sequence[str], offset: S2Offset) -> np.ndarray:
    """float32 (C,) offsets of the bands ``names`` (a band missing from a mapping gets 0)."""
    if offset is None:
        return np.zeros(len(names), dtype=np.float32)
    if isinstance(offset, Mapping):
        return np.array([offset.get(n, 0.0) for n in names], dtype=np.float32)
    return np.full(len(names), float(offset), dtype=np.float32)


def add_offset(data: np.ndarray, names: Sequence[str], offset: S2Offset) -> np.ndarray:
    """(C, h, w) digital numbers of bands ``names`` -> reflectance x 10000 (DN + offset)."""
    shift = band_offsets(names, offset)
    if not shift.any():
        return data
    return data + shift[:, None, None]
