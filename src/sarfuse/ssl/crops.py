"""Random training crops drawn from dataset patches.

Each item is a *context* crop of side ``crop + 2 * margin`` so that the second view can be shifted
by up to ``margin`` pixels and still be cut from real data (see :mod:`sarfuse.ssl.views`).

Crop ``n`` of a run (its global number) is a pure function of ``(seed, n)``, and step ``g`` trains
on crops ``g * B .. g * B + B - 1`` (:class:`CropBatchSampler`); so a resumed run, in any number of
loader workers, sees exactly the crops the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

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

    Item ``n`` (any non-negative int, the crop's global number) is drawn from a generator seeded
    with ``(seed, n)``: the same number always gives the same crop. Crops whose valid fraction is
    below ``min_valid`` are redrawn a few times so training sees data, not padding.
    """

    def __init__(
        self,
        patches: Dataset,
        context: int,
        crops_per_patch: int,
        min_valid: float = 0.5,
        cache_size: int = 512,
        seed: int = 0,
    ) -> None:
        self.patches = patches
        self.context = context
        self.crops_per_patch = crops_per_patch
        self.min_valid = min_valid
        self.cache_size = cache_size
        self.seed = seed
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
        rng = np.random.default_rng([self.seed, int(index)])
        patch = self._patch(int(rng.integers(len(self.patches))))
        h, w = patch["valid"].shape[-2:]
        c = self.context
        for _ in range(8):
            top = int(rng.integers(0, h - c + 1))
            left = int(rng.integers(0, w - c + 1))
            valid = patch["valid"][top : top + c, left : left + c]
            if valid.float().mean() >= self.min_valid:
                break
        return {k: v[..., top : top + c, left : left + c] for k, v in patch.items()}


class CropBatchSampler(Sampler[list[int]]):
    """Batches of global crop numbers: step ``g`` of rank ``r`` among ``R`` gets
    ``(g * R + r) * batch + [0, batch)``; an epoch is ``max(epoch_size // (batch * R), 1)`` steps.

    Iteration continues from the step after the last one handed out (starting at ``step``, the
    global step a resumed run restarts from), so each epoch carries on where the last one ended.
    """

    def __init__(self, epoch_size: int, batch: int, step: int = 0) -> None:
        self.epoch_size, self.batch, self.step = epoch_size, batch, step

    @staticmethod
    def _rank() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def epoch_steps(self, world: int = 1) -> int:
        """Steps in an epoch when ``world`` ranks share the crops."""
        return max(self.epoch_size // (self.batch * world), 1)

    def __len__(self) -> int:
        return self.epoch_steps(self._rank()[1])

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._rank()
        end = (self.step // len(self) + 1) * len(self)  # the end of the epoch that holds self.step
        while self.step < end:
            first = (self.step * world + rank) * self.batch
            self.step += 1
            yield list(range(first, first + self.batch))
