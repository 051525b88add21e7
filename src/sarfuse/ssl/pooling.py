"""Superpixel pooling: the mean feature of every (image, segment) in a batch, in one pass.

Segment ids are made unique across the batch (``image * (max_id + 1) + id``), compacted with a
histogram of the keys (or a sort when ids are sparse) and summed with ``index_add_``, so the cost
does not depend on the number of segments and there is no Python loop over them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sarfuse.errors import check


def superpixel_mean(
    features: Tensor,
    segments: Tensor,
    mask: Tensor,
    max_segments: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean of ``features`` (B, D, H, W) over the ``mask`` (B, H, W) pixels of every segment.

    ``segments`` (B, H, W) holds any non-negative integer ids. Returns ``pooled`` (N, D),
    ``batch_idx`` (N,) and ``seg_id`` (N,), rows sorted by (image, id); segments with no masked
    pixel are dropped. With ``max_segments``, a random subset of at most that many rows is kept
    (in the same order) to bound the memory of an N x N contrastive loss.
    """
    b, d, h, w = features.shape
    check(
        segments.shape == (b, h, w) and mask.shape == (b, h, w),
        None,
        f"segments {tuple(segments.shape)} and mask {tuple(mask.shape)} must be (B, H, W) = "
        f"{(b, h, w)}",
    )
    mask = mask.bool()
    stride = int(segments.max()) + 1 if segments.numel() else 1
    image = torch.arange(b, device=segments.device)[:, None, None]
    keys = (image * stride + segments.long()).reshape(-1)  # (B*H*W,) one key per pixel
    unique, inverse = _compact(keys, mask.reshape(-1), b * stride)  # (N,), (B*H*W,)
    # every pixel is summed; masked-out pixels go to a spare row N that is dropped (a boolean
    # selection of the features would cost a copy of them and a host sync)
    values = features.permute(0, 2, 3, 1).reshape(-1, d)  # (B*H*W, D); a view if channels-last
    sums = values.new_zeros(len(unique) + 1, d).index_add_(0, inverse, values)[:-1]
    counts = torch.bincount(inverse, minlength=len(unique) + 1)[:-1].clamp_min(1)
    pooled = sums / counts[:, None].to(sums.dtype)  # (N, D)
    batch_idx, seg_id = unique // stride, unique % stride
    if max_segments is not None and len(unique) > max_segments:
        keep = torch.randperm(len(unique), generator=generator)[:max_segments].sort().values
        keep = keep.to(pooled.device)
        pooled, batch_idx, seg_id = pooled[keep], batch_idx[keep], seg_id[keep]
    return pooled, batch_idx, seg_id


def paired_superpixel_mean(
    f1: Tensor,
    f2: Tensor,
    segments: Tensor,
    mask: Tensor,
    max_segments: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pool two aligned maps f1 (B, D1, H, W), f2 (B, D2, H, W) over the same segments and mask.

    Returns ``(p1 (N, D1), p2 (N, D2), batch_idx, seg_id)`` whose rows describe the same
    superpixels, ready to be positive pairs.
    """
    pooled, batch_idx, seg_id = superpixel_mean(
        torch.cat([f1, f2], dim=1), segments, mask, max_segments, generator
    )
    return pooled[:, : f1.shape[1]], pooled[:, f1.shape[1] :], batch_idx, seg_id


def _compact(keys: Tensor, mask: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """The sorted distinct ``keys`` under ``mask`` (N,), and each key's row in them, N where
    ``mask`` is False. Keys below ``bins``: a histogram when that is small, else a sort."""
    if bins <= 4 * keys.numel():
        present = torch.zeros(bins + 1, dtype=torch.bool, device=keys.device)
        present[torch.where(mask, keys, bins)] = True
        present = present[:-1]
        unique = present.nonzero().squeeze(1)
        row = torch.cumsum(present, 0) - 1  # (bins,) key -> its row among the present keys
        return unique, torch.where(mask, row[keys], len(unique))
    unique, inverse = torch.unique(keys[mask], return_inverse=True)
    full = torch.full_like(keys, len(unique))
    full[mask] = inverse
    return unique, full
