"""The projection head keeps the map's shape and gives every pixel a unit vector."""

from __future__ import annotations

import torch

from sarfuse.ssl.heads import ProjectionHead


def test_projection_head_gives_unit_vectors_per_pixel():
    torch.manual_seed(0)
    head = ProjectionHead(5)
    x = torch.randn(2, 5, 3, 4)
    z = head(x)
    assert z.shape == x.shape
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2, 3, 4))
    expected = torch.einsum("oc,bchw->bohw", head.conv.weight[..., 0, 0], x)
    expected = expected + head.conv.bias[:, None, None]
    torch.testing.assert_close(z, expected / expected.norm(dim=1, keepdim=True))
