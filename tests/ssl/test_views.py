"""Views and alignment: known shifts land at known places; aligning view 2 recovers view 1."""

from __future__ import annotations

import pytest
import torch

from sarfuse.errors import SarfuseError
from sarfuse.ssl.views import ViewParams, align_to_view1, make_views, sample_view_params

C, M = 8, 3  # crop and margin: contexts are 14 x 14


def params(dy, dx, flip_h=False, flip_v=False) -> ViewParams:
    def t(v, dtype):
        return torch.as_tensor(v if isinstance(v, list) else [v], dtype=dtype)

    b = torch.bool
    return ViewParams(t(dy, torch.long), t(dx, torch.long), t(flip_h, b), t(flip_v, b), margin=M)


def context_batch(b: int = 1) -> dict:
    """Every pixel value encodes its context position: value = 100 * row + col."""
    rows = torch.arange(C + 2 * M)[:, None] * 100 + torch.arange(C + 2 * M)[None, :]
    grid = rows.expand(b, C + 2 * M, C + 2 * M)
    return {
        "s2": torch.stack([grid, -grid], 1).float(),
        "valid": torch.ones(b, C + 2 * M, C + 2 * M, dtype=torch.bool),
        "segments": torch.stack([grid, grid // 2], 1),  # (B, S=2, h, w)
        "path": ["a.tif"] * b,
    }


def test_sample_view_params_ranges_and_seed():
    p = sample_view_params(500, 4, torch.Generator().manual_seed(1))
    assert p.dy.dtype == torch.long and p.flip_h.dtype == torch.bool and p.margin == 4
    assert int(p.dy.min()) == -4 and int(p.dx.max()) == 4
    assert 0.4 < p.flip_v.float().mean() < 0.6
    q = sample_view_params(500, 4, torch.Generator().manual_seed(1))
    assert torch.equal(p.dx, q.dx) and torch.equal(p.flip_h, q.flip_h)


def test_view1_is_the_centre_crop_and_view2_the_shifted_crop():
    batch = context_batch()
    v1, v2 = make_views(batch, params(2, -1))
    assert v1["s2"].shape == (1, 2, C, C) and v1["segments"].shape == (1, 2, C, C)
    assert v1["s2"][0, 0, 0, 0] == 100 * M + M  # centre crop starts at (M, M)
    assert v2["s2"][0, 0, 0, 0] == 100 * (M + 2) + (M - 1)  # shifted by dy=2, dx=-1
    assert v2["s2"][0, 0, 5, 6] == 100 * (M + 2 + 5) + (M - 1 + 6)
    assert v1["path"] == batch["path"]


def test_flips_mirror_the_shifted_crop():
    batch = context_batch()
    _, plain = make_views(batch, params(1, 2))
    _, flipped = make_views(batch, params(1, 2, flip_h=True, flip_v=True))
    torch.testing.assert_close(flipped["s2"], plain["s2"].flip(-1, -2))
    _, left_right = make_views(batch, params(1, 2, flip_h=True))
    torch.testing.assert_close(left_right["segments"], plain["segments"].flip(-1))


def test_known_pixel_lands_at_known_place():
    # view 2 shifted by (dy, dx) = (2, 1): its pixel (0, 0) is view 1's pixel (2, 1)
    feat2 = torch.zeros(1, 1, C, C)
    feat2[0, 0, 0, 0] = 7.0
    aligned, overlap = align_to_view1(feat2, params(2, 1))
    assert aligned[0, 0, 2, 1] == 7.0 and aligned.sum() == 7.0
    assert not overlap[0, :2].any() and not overlap[0, :, :1].any() and overlap[0, 2:, 1:].all()
    # flipped left-right, that ground pixel is stored in view 2's column C - 1
    feat2 = feat2.flip(-1)
    aligned, _ = align_to_view1(feat2, params(2, 1, flip_h=True))
    assert aligned[0, 0, 2, 1] == 7.0 and aligned.sum() == 7.0


def test_round_trip_recovers_view1_on_the_overlap():
    b = 64
    batch = context_batch(b)
    p = sample_view_params(b, M, torch.Generator().manual_seed(0))
    assert p.flip_h.any() and p.flip_v.any() and (p.dy != 0).any()
    v1, v2 = make_views(batch, p)
    aligned, overlap = align_to_view1(v2["s2"], p)  # "features" = the image itself
    keep = overlap[:, None].expand_as(aligned)
    assert torch.equal(aligned[keep], v1["s2"][keep])
    assert (aligned[~keep] == 0).all()
    expected = (C - p.dy.abs()) * (C - p.dx.abs())
    assert torch.equal(overlap.sum((1, 2)), expected)
    segs, _ = align_to_view1(v2["segments"], p)  # integer maps with extra dims work too
    keep = overlap[:, None].expand_as(segs)
    assert torch.equal(segs[keep], v1["segments"][keep])


def test_alignment_passes_gradients():
    feat2 = torch.randn(2, 3, C, C, requires_grad=True)
    aligned, overlap = align_to_view1(feat2, sample_view_params(2, M))
    aligned.sum().backward()
    assert feat2.grad.sum() == overlap.sum() * 3


def test_shift_larger_than_the_context_is_refused():
    batch = context_batch()
    with pytest.raises(SarfuseError, match="shift of 4 pixels leaves the 14x14 context"):
        make_views(batch, params(M + 1, 0))
    with pytest.raises(SarfuseError, match="needs a 'valid' mask"):
        make_views({"s2": batch["s2"]}, params(0, 0))
