"""A network ready for inference only: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be folded
into the convolution's weights and bias: y = g (W x + b - m) / s + beta = W' x + b'. Mapping a
scene then skips one full pass over every feature map per BatchNorm (they are memory-bound on a
CPU). The folded network gives the same outputs up to float rounding; it cannot be trained.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sarfuse.models.resunet import BasicBlock


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight.detach() * scale[:, None, None, None])
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _foldable(a: nn.Module, b: nn.Module) -> bool:
    return (
        isinstance(a, nn.Conv2d)
        and isinstance(b, nn.BatchNorm2d)
        and b.track_running_stats
        and b.affine
    )


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose conv -> BatchNorm pairs are single convolutions.

    Pairs are found in ``nn.Sequential`` containers (conv, bn, ...) and in ResUnet's
    :class:`BasicBlock` (``conv2``, ``norm2``); a folded BatchNorm becomes ``nn.Identity``.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _foldable(module[i], module[i + 1]):
                    module[i] = fold_conv_bn(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        elif isinstance(module, BasicBlock) and _foldable(module.conv2, module.norm2):
            module.conv2 = fold_conv_bn(module.conv2, module.norm2)
            module.norm2 = nn.Identity()
    return model.requires_grad_(False)
