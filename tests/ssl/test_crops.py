"""Training crops: centre crops of batches, random context crops of patches, and the batch sampler
that numbers crops so a resumed run draws the same ones."""

from __future__ import annotations

import pytest
import torch

from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.ssl.crops import CropBatchSampler, CropDataset, crop_batch
from sarfuse.superpixels import SuperpixelParams

P = 40  # patch side of the in-memory patches


def coordinate_patch(valid: torch.Tensor | None = None, path: str = "patch.tif") -> dict:
    """A patch whose S1 bands hold each pixel's row and column, so a crop reveals its window."""
    rows, cols = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    size = valid.shape[-1] if valid is not None else P
    rows, cols = rows[:size, :size], cols[:size, :size]
    return {
        "s1": torch.stack([rows, cols]).float(),  # (2, P, P)
        "s2": torch.zeros(4, size, size),
        "valid": torch.ones(size, size, dtype=torch.bool) if valid is None else valid,
        "segments": rows // 5 * 8 + cols // 5,
        "label": torch.zeros(size, size, dtype=torch.int64),  # not a training key: dropped
        "path": path,
        "window": (0, 0),
    }


class Patches(torch.utils.data.Dataset):
    """Stand-in for PatchDataset: a list of patch dicts."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def window_of(crop: dict) -> tuple[int, int]:
    """(top, left) of a crop of a coordinate patch."""
    return int(crop["s1"][0, 0, 0]), int(crop["s1"][1, 0, 0])


def test_crop_batch_takes_the_centre_of_spatial_tensors_only():
    ctx, size = 10, 6
    x = torch.arange(2 * 3 * ctx * ctx).reshape(2, 3, ctx, ctx).float()
    batch = {
        "s1": x,
        "valid": torch.ones(2, ctx, ctx, dtype=torch.bool),
        "segments": torch.zeros(2, 2, ctx, ctx, dtype=torch.int64),  # multi-scale (B, S, H, W)
        "path": ["a", "b"],
    }
    out = crop_batch(batch, size)
    assert out["s1"].shape == (2, 3, size, size)
    assert out["valid"].shape == (2, size, size)
    assert out["segments"].shape == (2, 2, size, size)
    assert torch.equal(out["s1"], x[..., 2:8, 2:8])
    assert out["path"] == ["a", "b"]
    assert batch["s1"].shape[-1] == ctx  # the input is left alone


def test_crops_have_the_context_size_and_lie_inside_the_patch():
    ctx = 12
    crops = CropDataset(Patches([coordinate_patch()]), context=ctx, crops_per_patch=5)
    assert len(crops) == 5
    corners = set()
    for n in range(60):
        crop = crops[n]
        assert set(crop) == {"s1", "s2", "valid", "segments"}
        assert crop["s1"].shape == (2, ctx, ctx) and crop["s2"].shape == (4, ctx, ctx)
        assert crop["valid"].shape == crop["segments"].shape == (ctx, ctx)
        top, left = window_of(crop)
        assert 0 <= top <= P - ctx and 0 <= left <= P - ctx
        rows, cols = torch.meshgrid(
            torch.arange(top, top + ctx), torch.arange(left, left + ctx), indexing="ij"
        )
        assert torch.equal(crop["s1"][0], rows.float()) and torch.equal(crop["s1"][1], cols.float())
        corners.add((top, left))
    assert len(corners) > 40  # positions are spread over the patch, not a fixed window


def test_a_crop_is_a_function_of_seed_and_number():
    patches = Patches([coordinate_patch(), coordinate_patch()])
    a, b = CropDataset(patches, 12, 16, seed=3), CropDataset(patches, 12, 16, seed=3)
    other = CropDataset(patches, 12, 16, seed=4)
    torch.manual_seed(0)
    first = [window_of(a[n]) for n in range(20)]
    torch.manual_seed(99)  # the global generator plays no part
    assert [window_of(b[n]) for n in reversed(range(20))][::-1] == first
    assert [window_of(other[n]) for n in range(20)] != first
    assert len(set(first)) > 15  # numbers give different crops


def test_crops_are_drawn_from_every_patch():
    items = [coordinate_patch() for _ in range(3)]
    for i, item in enumerate(items):
        item["s2"] = torch.full_like(item["s2"], float(i))
    crops = CropDataset(Patches(items), 12, 16)
    seen = {int(crops[n]["s2"][0, 0, 0]) for n in range(60)}
    assert seen == {0, 1, 2}


def test_crops_with_little_valid_data_are_redrawn():
    valid = torch.zeros(P, P, dtype=torch.bool)
    valid[:14, :14] = True  # a valid corner: few 12 x 12 windows are half valid
    patches = Patches([coordinate_patch(valid)])

    def share_half_valid(min_valid: float) -> float:
        crops = CropDataset(patches, 12, 16, min_valid=min_valid)
        return sum(float(crops[n]["valid"].float().mean() >= 0.5) for n in range(300)) / 300

    unfiltered, filtered = share_half_valid(0.0), share_half_valid(0.5)
    assert unfiltered < 0.1
    assert filtered > 3 * unfiltered


def test_a_fully_invalid_patch_still_gives_a_crop():
    crops = CropDataset(Patches([coordinate_patch(torch.zeros(P, P, dtype=torch.bool))]), 12, 16)
    assert crops[0]["valid"].shape == (12, 12) and not crops[0]["valid"].any()


def test_a_patch_smaller_than_the_context_is_a_one_line_error():
    small = coordinate_patch(torch.ones(10, 10, dtype=torch.bool), path="small.tif")
    crops = CropDataset(Patches([small]), context=12, crops_per_patch=16)
    with pytest.raises(SarfuseError, match="smaller than the training context") as err:
        crops[0]
    assert str(err.value).startswith("small.tif: ") and "\n" not in str(err.value)
    assert "10x10" in str(err.value)


def test_crops_from_a_real_patch_dataset(tmp_path):
    data = generate(tmp_path / "data", size=128, seed=1, layout="dfc2020", patch=128)
    patches = PatchDataset(discover(data), patch_size=64, superpixels=SuperpixelParams())
    crops = CropDataset(patches, context=20, crops_per_patch=2)
    assert len(crops) == 4 * 2
    crop = crops[5]
    assert crop["s1"].shape == (2, 20, 20) and crop["s2"].shape == (4, 20, 20)
    assert crop["segments"].dtype == torch.int64 and crop["segments"].shape == (20, 20)
    assert crop["valid"].float().mean() >= 0.5
    assert torch.isfinite(crop["s2"]).all()


def test_the_sampler_numbers_the_crops_of_each_step():
    sampler = CropBatchSampler(epoch_size=10, batch=3)
    assert len(sampler) == sampler.epoch_steps() == 3  # whole batches only
    assert sampler.epoch_steps(world=2) == 1  # two ranks share each epoch's crops
    assert list(sampler) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert list(sampler) == [[9, 10, 11], [12, 13, 14], [15, 16, 17]]  # the next epoch


def test_the_sampler_restarts_mid_epoch_at_a_given_step():
    resumed = CropBatchSampler(epoch_size=12, batch=4, step=4)  # epoch 1, second step
    assert len(resumed) == 3
    assert list(resumed) == [[16, 17, 18, 19], [20, 21, 22, 23]]  # the rest of epoch 1
    assert list(resumed)[0] == [24, 25, 26, 27]


def test_the_sampler_makes_full_batches_from_a_small_epoch():
    sampler = CropBatchSampler(epoch_size=2, batch=4)
    assert len(sampler) == 1
    assert list(sampler) == [[0, 1, 2, 3]]
