"""How a scene is cut into tiles for mapping: the defaults and the one rule on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from sarfuse.errors import SarfuseError
from sarfuse.runtime import InferencePrecision


@dataclass(frozen=True)
class MapConfig:
    tile: int = 512  # tile side in pixels: a multiple of 8, as the ResUnet downsamples by 8
    overlap: int = 64  # pixels shared with each neighbour, blended (below tile/2)
    batch_tiles: int = 4  # tiles per forward pass (memory grows with it, not with the scene)
    probabilities: bool = False  # also write class probabilities (float32, a band per class)
    cog: bool = True  # write Cloud Optimized GeoTIFFs with overviews
    # the network's arithmetic: auto = bfloat16 where the device has it natively (GPUs, CPUs
    # with AMX / AVX-512 BF16: about 2x faster; 99.7-99.99 % of pixels as in float32 on real
    # chips), else float32; 32 = always float32
    precision: InferencePrecision = "auto"

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        if self.batch_tiles < 1:
            raise SarfuseError(None, f"--batch-tiles must be >= 1, got {self.batch_tiles}")
        if self.precision not in get_args(InferencePrecision):
            choices = " | ".join(get_args(InferencePrecision))
            raise SarfuseError(None, f"--precision must be {choices}, got {self.precision!r}")


def check_tiling(tile: int, overlap: int) -> None:
    """Refuse a tile the network cannot take whole (not a multiple of 8) or an overlap that
    lets a tile's two blended edges meet (not below tile/2)."""
    if tile < 8 or tile % 8 or not 0 <= overlap < tile // 2:
        raise SarfuseError(
            None,
            f"--tile must be a multiple of 8 (at least 8) and 0 <= --overlap < tile/2, "
            f"got --tile {tile}, --overlap {overlap}",
        )


# an exported graph's fixed input tile and the overlap it suggests: smaller than mapping's, as
# plugins like QGIS's Deepness run the graph on many small tiles
EXPORT_TILING = MapConfig(tile=256, overlap=32)
