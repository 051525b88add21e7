"""Random training crops drawn from dataset patches.

Each item is a *context* crop of side ``crop + 2 * margin`` so that the second view can be shifted
by up to ``margin`` pixels and still be cut from real data (see :mod:`sarfuse.ssl.views`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.utils.data import Dataset

from sarfuse.errors import SarfuseError

SPATIAL_KEYS = ("s1", "s2", "valid", "segments")


def crop_batch(batch: dict, size: int) -> dict:
    """Centre-crop every spatial tensor of ``batch`` (last two dims) to ``size`` x ``size``."""
    out = dict(batch)
    for key in SPATIAL_KEYS:
        if key in batch:
            h, w = batch[key].shape[-2:]
            top, left = (h - size) // 2, (w - size) // 2
            out[key] = batch[key][..., top : top + size, left : left + size]
    return out


class CropDataset(Dataset):
    """Random context crops from the patches of a ``PatchDataset``; an epoch is
    ``crops_per_patch * len(patches)`` crops.

    Crops whose valid fraction is below ``min_valid`` are redrawn a few times so training sees data,
    not padding. The patch and the position come from torch's global generator (never from the
    index), so a run resumed from a checkpoint, which restores that generator, draws the same crops.
    """

    def __init__(
        self,
        patches: Dataset,
        context: int,
        crops_per_patch: int = 16,
        min_valid: float = 0.5,
        cache_size: int = 512,
    ) -> None:
        self.patches = patches
        self.context = context
        self.crops_per_patch = crops_per_patch
        self.min_valid = min_valid
        self.cache_size = cache_size
        self._cache: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return len(self.patches) * self.crops_per_patch

    def _patch(self, index: int) -> dict:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        item = self.patches[index]
        keep = {k: item[k] for k in SPATIAL_KEYS if k in item}
        h, w = keep["valid"].shape[-2:]
        if min(h, w) < self.context:
            raise SarfuseError(
                item.get("path"),
                f"patch of {h}x{w} pixels is smaller than the training context of {self.context} "
                "pixels (crop + 2 x shift); use a larger --patch-size or a smaller --crop",
            )
        self._cache[index] = keep
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return keep

    def __getitem__(self, index: int) -> dict:
        patch = self._patch(int(torch.randint(len(self.patches), ())))
        h, w = patch["valid"].shape[-2:]
        c = self.context
        for _ in range(8):
            top = int(torch.randint(0, h - c + 1, ()))
            left = int(torch.randint(0, w - c + 1, ()))
            valid = patch["valid"][top : top + c, left : left + c]
            if valid.float().mean() >= self.min_valid:
                break
        return {k: v[..., top : top + c, left : left + c] for k, v in patch.items()}
