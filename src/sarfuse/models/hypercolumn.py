"""Hypercolumns: every encoder level upsampled to the input size and stacked, per pixel.

This is how the authors probe their image-level baselines (MCL, DCCA): those losses train only
the encoders, so a decoder's output would be untrained. Each level (B, C_k, H / 2^k, W / 2^k) is
upsampled to (H, W) and the levels are concatenated. The authors upsample by nearest neighbour;
we upsample bilinearly, so the coarse levels do not paint 8 x 8 blocks over every map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def hypercolumn(levels: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Levels (B, C_k, h_k, w_k) -> (B, sum C_k, *size), each bilinearly upsampled to ``size``."""
    up = [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in levels]
    return torch.cat(up, dim=1)
