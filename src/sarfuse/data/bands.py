"""Sentinel-1/-2 band names, stack orders and resolutions: bands are addressed by name, not index.

Files differ in which bands they hold and in what order (13-band L1C stacks of DFC2020, SEN12MS
and Sen1Floods11, 12-band L2A stacks without the cirrus band B10, ...). Everything downstream
asks for bands by name and this module turns names into positions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from sarfuse.errors import SarfuseError

Sensor = Literal["s1", "s2"]

S1_BANDS: tuple[str, ...] = ("VV", "VH")
S2_BANDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
)  # fmt: skip
CIRRUS_BAND = "B10"  # sees the upper atmosphere, not the ground; L2A products drop it


def without_cirrus(bands: Iterable[str]) -> tuple[str, ...]:
    """``bands`` in their order, but the cirrus band."""
    return tuple(b for b in bands if b != CIRRUS_BAND)


S2_L2A_BANDS: tuple[str, ...] = without_cirrus(S2_BANDS)

# native ground sampling distance in metres; every band is read on the 10 m grid
RESOLUTION: dict[str, int] = {
    "VV": 10, "VH": 10,
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip
S2_10M_BANDS: tuple[str, ...] = tuple(b for b in S2_BANDS if RESOLUTION[b] == 10)  # B2 B3 B4 B8

DEFAULT_S1_BANDS: tuple[str, ...] = S1_BANDS
DEFAULT_S2_BANDS: tuple[str, ...] = S2_10M_BANDS  # the paper's optical bands
ALL_BANDS = "all"  # a band list of this one word: every S2 band the data holds but B10

# stack orders assumed from the band count when a file does not name its bands
S2_STACKS: dict[int, tuple[str, ...]] = {
    13: S2_BANDS,  # L1C: DFC2020, SEN12MS, Sen1Floods11
    12: S2_L2A_BANDS,  # L2A: no cirrus band
    10: ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),  # 10 + 20 m bands
    4: S2_10M_BANDS,
}
SENSOR_BANDS: dict[str, tuple[str, ...]] = {"s1": S1_BANDS, "s2": S2_BANDS}


def band_name(name: str) -> str | None:
    """Canonical band name (``"b02"``, ``"B02"``, ``"B2"`` -> ``"B2"``; ``"vv"`` -> ``"VV"``).

    Returns None when ``name`` is not a Sentinel-1/-2 band.
    """
    text = name.strip().upper()
    if text in S1_BANDS:
        return text
    match = re.fullmatch(r"B0?(\d{1,2}A?)", text)
    if match is None:
        return None
    canonical = f"B{match.group(1)}"
    return canonical if canonical in RESOLUTION else None


def resolve_bands(
    names: Iterable[str], sensor: Sensor, available: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Positions of ``names`` in ``available`` (default: the sensor's full stack order).

    Raises :class:`SarfuseError` for unknown names, duplicates and bands not in ``available``.
    """
    available = SENSOR_BANDS[sensor] if available is None else tuple(available)
    positions: list[int] = []
    for raw in names:
        name = band_name(raw)
        if name is None or name not in SENSOR_BANDS[sensor]:
            known = ", ".join(SENSOR_BANDS[sensor])
            raise SarfuseError(None, f"unknown {sensor.upper()} band {raw!r} (known: {known})")
        if name not in available:
            have = ", ".join(available)
            raise SarfuseError(
                None, f"{sensor.upper()} band {name} is not available (have: {have})"
            )
        if available.index(name) in positions:
            raise SarfuseError(None, f"{sensor.upper()} band {name} is asked for twice")
        positions.append(available.index(name))
    return tuple(positions)


def canonical_bands(names: Iterable[str], sensor: Sensor) -> tuple[str, ...]:
    """``names`` validated and in canonical spelling, in the order given."""
    full = SENSOR_BANDS[sensor]
    return tuple(full[i] for i in resolve_bands(names, sensor))


def network_s2_bands(requested: Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """The S2 bands a network is fed: ``requested``, or for ``("all",)`` every band of
    ``available`` but the cirrus band."""
    return without_cirrus(available) if means_all(requested) else tuple(requested)


def means_all(requested: Sequence[str]) -> bool:
    """Whether a band list is the one word ``all`` (any case)."""
    return [b.lower() for b in requested] == [ALL_BANDS]
