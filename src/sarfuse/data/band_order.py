"""Does an S2 stack hold its bands in the order its band count implies? Spectral relations that
hold for the pixels of every real scene say so, with or without the cirrus band.

A stack without band descriptions is read as B1..B12 by its band count; a reversed or shuffled
stack would otherwise feed every later step the wrong bands. Each relation below holds, pixel
by pixel, for water, vegetation, soil, urban surfaces, snow and clouds, in L1C (top of
atmosphere) and L2A (surface) reflectance, at any scale or offset (they compare bands of one
pixel): on three real chips (Sen1Floods11 L1C, flooded and dry land; BigEarthNet L2A) each
holds for 78-100 % of the pixels, and a stack whose named bands are others breaks at least one
for most of them (below :data:`MIN_AGREEMENT`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_AGREEMENT = 0.5  # a relation met by fewer of the pixels than this: the bands are not those
MIN_PIXELS = 50  # fewer bright pixels than this: the relation is not judged
DARK = 0.1  # pixels darker than this fraction of the stack's 99th percentile are noise, skipped
NEAR = (0.75, 1.33)  # two bands on one plateau of every spectrum differ by less than this ratio


def _near(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a >= NEAR[0] * b) & (a <= NEAR[1] * b)


def _not_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a <= 1.05 * b


def _near_wide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a >= b / 1.5) & (a <= 1.5 * b)


@dataclass(frozen=True)
class Relation:
    """``test(first, second)`` holds per pixel: ``first`` is ``says`` ``second``, ``because``."""

    first: str
    second: str
    test: Callable[[np.ndarray, np.ndarray], np.ndarray]
    says: str
    because: str


RELATIONS: tuple[Relation, ...] = (
    Relation("B8A", "B8", _near, "within 0.75-1.33x of", "both on the near-infrared plateau"),
    Relation("B7", "B8A", _near, "within 0.75-1.33x of", "both on the near-infrared plateau"),
    Relation("B12", "B11", _not_above, "not above", "water absorbs more at 2190 nm"),
    Relation("B9", "B8A", _not_above, "not above", "water vapour absorbs at 945 nm"),
    Relation("B1", "B2", _near_wide, "within 0.67-1.5x of", "neighbours in the blue"),
)


def _agreement(relation: Relation, x: dict[str, np.ndarray], dark: float) -> float | None:
    """Share of the bright pixels that meet ``relation`` (None when too few are bright)."""
    a, b = x[relation.first], x[relation.second]
    bright = np.maximum(a, b) >= dark
    if bright.sum() < MIN_PIXELS:
        return None
    return float(relation.test(a[bright], b[bright]).mean())


def _cirrus_agreement(x: dict[str, np.ndarray]) -> float:
    """Share of the pixels whose darkest band is the cirrus band B10 (1375 nm, where the air's
    water vapour absorbs nearly all light from the ground)."""
    others = np.min([v for k, v in x.items() if k != "B10"], axis=0)
    return float((x["B10"] <= others).mean())


def band_order_problem(values: np.ndarray, names: Sequence[str]) -> str | None:
    """What shows that the bands of ``values`` (C, N valid pixels) are not ``names``; None when
    nothing does (including when too few relations apply, e.g. a 4-band stack)."""
    x = dict(zip(names, np.asarray(values, dtype=np.float64), strict=True))
    if values.shape[1] < MIN_PIXELS:
        return None
    position = {name: i + 1 for i, name in enumerate(names)}
    if "B10" in x and (share := _cirrus_agreement(x)) < MIN_AGREEMENT:
        return (
            f"band {position['B10']} (taken as the cirrus band B10) is the darkest band in only "
            f"{share:.0%} of the pixels, as it is in nearly all of a real scene"
        )
    dark = DARK * float(np.percentile(values, 99))
    for rel in RELATIONS:
        if rel.first in x and rel.second in x:
            share = _agreement(rel, x, dark)
            if share is not None and share < MIN_AGREEMENT:
                return (
                    f"band {position[rel.first]} (taken as {rel.first}) is {rel.says} band "
                    f"{position[rel.second]} (taken as {rel.second}) in only {share:.0%} of the "
                    f"pixels, where a real scene has nearly all ({rel.because})"
                )
    return None
