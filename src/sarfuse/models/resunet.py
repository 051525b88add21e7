"""ResUnet: a ResNet-18-style encoder with a U-Net decoder, giving a feature for every pixel.

The encoder has no early downsampling (training crops are only 32 x 32 pixels): a stride-1 3x3
stem, then four stages of BasicBlocks at widths w, 2w, 4w, 8w with strides 1, 2, 2, 2, so the
bottleneck is at 1/8 resolution. The decoder upsamples back to full resolution through skip
connections. The pieces (:class:`Encoder`, :class:`Decoder`, :class:`ImageHead`) are separate so
that the intermediate-fusion network can reuse them with two encoders and one decoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["batch", "group"]
DOWNSAMPLE = 8  # total stride of the encoder: inputs are padded to a multiple of this


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm, or GroupNorm (up to 8 groups) for tiny batches."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.BatchNorm2d(channels)


def conv_norm_relu(cin: int, cout: int, norm: Norm, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        norm_layer(norm, cout),
        nn.ReLU(inplace=True),
    )


class Projection(nn.Conv2d):
    """The 1x1 convolution of a residual shortcut, safe in channels-last training on any CPU.

    oneDNN's AVX2 kernel for the weight gradient of a strided channels-last 1x1 convolution with
    few input channels (the one CPUs without AVX-512 run: seen on an AMD EPYC with torch 2.13,
    2-4 input and 4-16 output channels) writes past its buffer: the process aborts, hangs or
    silently corrupts memory. Such a layer reads NCHW copies of its input and weight instead
    (the weight needs an explicit copy: a channels-last 1x1 kernel also counts as contiguous).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or self.stride == (1, 1) or self.in_channels % 8 == 0:
            return super().forward(x)
        weight = self.weight.clone(memory_format=torch.contiguous_format)
        out = self._conv_forward(x.contiguous(), weight, self.bias)
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 block)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.conv1 = conv_norm_relu(cin, cout, norm, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                Projection(cin, cout, 1, stride=stride, bias=False), norm_layer(norm, cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm2(self.conv2(self.conv1(x))) + self.shortcut(x))


class Encoder(nn.Module):
    """Stem + four BasicBlock stages; returns the feature map of every stage.

    ``forward(x (B, C, H, W))`` with H, W multiples of 8 gives four maps of shapes
    (B, w, H, W), (B, 2w, H/2, W/2), (B, 4w, H/4, W/4), (B, 8w, H/8, W/8).
    """

    def __init__(self, in_channels: int, width: int, blocks: Sequence[int], norm: Norm) -> None:
        super().__init__()
        self.channels = tuple(width * 2**i for i in range(4))
        self.stem = conv_norm_relu(in_channels, width, norm)
        stages, cin = [], width
        for cout, stride, n in zip(self.channels, (1, 2, 2, 2), blocks, strict=True):
            layers = [
                BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, norm)
                for i in range(n)
            ]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        levels, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        return levels


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 convolutions."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: Norm) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_norm_relu(cin + cskip, cout, norm), conv_norm_relu(cout, cout, norm)
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class Decoder(nn.Module):
    """U-Net decoder from the four encoder levels (channels ``channels``) to (B, feat_dim, H, W)."""

    def __init__(self, channels: Sequence[int], feat_dim: int, norm: Norm) -> None:
        super().__init__()
        c = list(channels)
        self.ups = nn.ModuleList(UpBlock(c[i + 1], c[i], c[i], norm) for i in reversed(range(3)))
        self.head = nn.Conv2d(c[0], feat_dim, 1)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        x = levels[-1]
        for up, skip in zip(self.ups, reversed(levels[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)


class ImageHead(nn.Module):
    """Global average pool of a bottleneck (B, C, h, w), then a two-layer MLP -> (B, out_dim)."""

    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, in_channels),
            nn.ReLU(inplace=True),
            nn.Linear(in_channels, out_dim),
        )

    def forward(self, bottleneck: Tensor) -> Tensor:
        return self.mlp(bottleneck.mean(dim=(-2, -1)))


def pad_to_multiple(x: Tensor, multiple: int = DOWNSAMPLE) -> Tensor:
    """Replicate-pad the bottom/right of (B, C, H, W) so H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class ResUnet(nn.Module):
    """ResNet-18-style U-Net: (B, C, H, W) -> per-pixel (B, feat_dim, H, W) and image (B, feat_dim).

    Any H, W is accepted: the input is padded to a multiple of 8 and the output cropped back.
    ``width`` 64 is the paper's network (64..512 channels). The sizes have no defaults here:
    :class:`sarfuse.models.fusion.ModelConfig` holds them.
    """

    def __init__(
        self, in_channels: int, width: int, feat_dim: int, blocks: Sequence[int], norm: Norm
    ) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, width, blocks, norm)
        self.decoder = Decoder(self.encoder.channels, feat_dim, norm)
        self.image_head = ImageHead(self.encoder.channels[-1], feat_dim)

    def encode(self, x: Tensor) -> list[Tensor]:
        """The four encoder levels of an input whose H, W are multiples of 8."""
        return self.encoder(x)

    def decode(self, levels: Sequence[Tensor]) -> Tensor:
        """Per-pixel features (B, feat_dim, H, W) from the encoder levels."""
        return self.decoder(levels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[-2:]
        levels = self.encode(pad_to_multiple(x))
        return self.decode(levels)[..., :h, :w], self.image_head(levels[-1])
