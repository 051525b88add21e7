"""Overlapping tiles over a scene and the smooth weights that blend them without seams.

A tile's weight is 1 in its interior and on scene borders and rises as a raised cosine
(``sin^2``) over ``overlap`` pixels on edges shared with a neighbour. Two neighbours that
overlap by exactly ``overlap`` pixels get ``sin^2 + cos^2 = 1``; tiles spread evenly to stay
inside the scene may overlap a little more, so callers divide by the accumulated weight
(:func:`normalise`) and the blend sums to 1 everywhere.
"""

from __future__ import annotations

import math

import numpy as np

from sarfuse.errors import SarfuseError

Window = tuple[int, int, int, int]  # (row, col, height, width)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: as few tiles as overlap >= ``overlap`` allows, evenly spread.

    Spreading keeps every overlap close to ``overlap`` (rather than one large last overlap),
    which bounds what a streaming mapper must carry from one tile row to the next.
    """
    if size <= tile:
        return [0]
    n = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Windows ``(row, col, h, w)`` covering a ``height x width`` scene, row by row.

    All windows of one tile row share ``row`` and ``h``; a scene smaller than a tile is one window.
    Any tile the geometry allows is accepted here; what mapping accepts (tiles the network
    takes whole, blends that do not meet) is :class:`sarfuse.mapping.config.MapConfig`'s rule.
    """
    if height < 1 or width < 1:
        raise SarfuseError(None, f"cannot tile an empty scene of {height}x{width} pixels")
    if tile < 1 or not 0 <= overlap < tile:
        raise SarfuseError(None, f"need tile >= 1 and 0 <= overlap < tile, got {tile}, {overlap}")
    th, tw = min(tile, height), min(tile, width)
    return [
        (r, c, th, tw)
        for r in tile_starts(height, tile, overlap)
        for c in tile_starts(width, tile, overlap)
    ]


def _ramp(n: int, overlap: int, rise_start: bool, fall_end: bool) -> np.ndarray:
    """1-D weights of length ``n``: raised-cosine rise/fall over ``overlap`` pixels, else 1."""
    x = np.ones(n, dtype=np.float64)
    if overlap > 0:
        i = np.arange(n, dtype=np.float64)
        if rise_start:
            x *= np.where(i < overlap, np.sin(0.5 * np.pi * (i + 0.5) / overlap) ** 2, 1.0)
        if fall_end:
            j = n - 1 - i
            x *= np.where(j < overlap, np.sin(0.5 * np.pi * (j + 0.5) / overlap) ** 2, 1.0)
    return x


def blend_weights(
    h: int,
    w: int,
    overlap: int,
    at_top: bool,
    at_left: bool,
    at_bottom: bool,
    at_right: bool,
) -> np.ndarray:
    """``(h, w)`` float32 weights of a tile, all > 0; ``at_*``: that edge is on the scene border."""
    rows = _ramp(h, overlap, rise_start=not at_top, fall_end=not at_bottom)
    cols = _ramp(w, overlap, rise_start=not at_left, fall_end=not at_right)
    return np.outer(rows, cols).astype(np.float32)


def window_weights(window: Window, height: int, width: int, overlap: int) -> np.ndarray:
    """:func:`blend_weights` of a window of :func:`tile_windows`, borders from its position."""
    r, c, h, w = window
    return blend_weights(
        h,
        w,
        overlap,
        at_top=r == 0,
        at_left=c == 0,
        at_bottom=r + h >= height,
        at_right=c + w >= width,
    )


def normalise(accumulated: np.ndarray, weight_sum: np.ndarray) -> np.ndarray:
    """Divide ``(K, H, W)`` weighted sums by the ``(H, W)`` sum of weights (> 0 where covered)."""
    return accumulated / np.maximum(weight_sum, np.finfo(np.float32).tiny)[None]
