"""Superpixel pooling equals a reference loop, drops empty segments and passes gradients."""

from __future__ import annotations

import pytest
import torch

from sarfuse.errors import SarfuseError
from sarfuse.ssl.pooling import paired_superpixel_mean, superpixel_mean


def random_case(seed: int = 0, b: int = 3, d: int = 5, h: int = 9, w: int = 11):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 3, 7, 100, 2**40])  # sparse, large, non-contiguous ids
    segments = ids[torch.randint(len(ids), (b, h, w), generator=g)]
    mask = torch.rand(b, h, w, generator=g) < 0.7
    return features, segments, mask


def reference(features, segments, mask) -> dict[tuple[int, int], torch.Tensor]:
    out = {}
    for i in range(features.shape[0]):
        for s in segments[i].unique().tolist():
            sel = (segments[i] == s) & mask[i]
            if sel.any():
                out[(i, s)] = features[i][:, sel].mean(dim=1)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_reference_loop(seed):
    features, segments, mask = random_case(seed)
    pooled, batch_idx, seg_id = superpixel_mean(features, segments, mask)
    expected = reference(features, segments, mask)
    got = {(int(i), int(s)): row for i, s, row in zip(batch_idx, seg_id, pooled, strict=True)}
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        torch.testing.assert_close(got[key], row)
    assert pooled.shape == (len(expected), features.shape[1])


def test_segments_without_masked_pixels_are_dropped():
    features = torch.ones(1, 2, 2, 2)
    segments = torch.tensor([[[0, 0], [1, 1]]])
    mask = torch.tensor([[[True, True], [False, False]]])
    pooled, batch_idx, seg_id = superpixel_mean(features, segments, mask)
    assert seg_id.tolist() == [0] and batch_idx.tolist() == [0]
    empty, _, _ = superpixel_mean(features, segments, torch.zeros_like(mask))
    assert empty.shape == (0, 2)


def test_gradient_is_one_over_segment_size():
    features = torch.randn(1, 1, 2, 3, requires_grad=True)
    segments = torch.tensor([[[0, 0, 0], [5, 5, 9]]])
    mask = torch.tensor([[[True, True, True], [True, False, True]]])
    pooled, _, _ = superpixel_mean(features, segments, mask)
    pooled.sum().backward()
    expected = torch.tensor([[[[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 1.0]]]])
    torch.testing.assert_close(features.grad, expected)


def test_paired_rows_describe_the_same_superpixels():
    features, segments, mask = random_case()
    other = features[:, :2] * 2 + 1
    p1, p2, batch_idx, seg_id = paired_superpixel_mean(features, other, segments, mask)
    assert p1.shape[1] == 5 and p2.shape[1] == 2
    torch.testing.assert_close(p2, p1[:, :2] * 2 + 1)
    single, b1, s1 = superpixel_mean(features, segments, mask)
    torch.testing.assert_close(p1, single)
    assert torch.equal(batch_idx, b1) and torch.equal(seg_id, s1)


def test_max_segments_keeps_an_ordered_subset():
    features, segments, mask = random_case()
    full, batch_idx, seg_id = superpixel_mean(features, segments, mask)
    sub, sub_b, sub_s = superpixel_mean(
        features, segments, mask, max_segments=4, generator=torch.Generator().manual_seed(0)
    )
    assert len(sub) == 4 < len(full)
    keys = (batch_idx * 2**41 + seg_id).tolist()
    rows = [keys.index(k) for k in (sub_b * 2**41 + sub_s).tolist()]
    assert rows == sorted(rows)
    torch.testing.assert_close(sub, full[rows])


def test_shape_mismatch_is_refused():
    features, segments, mask = random_case()
    with pytest.raises(SarfuseError, match="must be \\(B, H, W\\)"):
        superpixel_mean(features, segments[:, :-1], mask)
