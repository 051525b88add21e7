"""The projection head between a network's per-pixel features and the contrastive loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """A 1x1 convolution, then L2 normalisation of every pixel: (B, C, H, W) -> (B, C, H, W).

    The authors place one between the decoder and the superpixel contrast (their ``fc_ins``), so
    the loss shapes the head's output while the probe reads the features before it, which are
    then free to keep information the contrast does not reward.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.conv(x), dim=1)
