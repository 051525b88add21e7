"""BatchNorm folded into convolutions: the same outputs as the eval-mode network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sarfuse.models import ModelConfig, build_model
from sarfuse.models.folding import fold_batchnorm, fold_conv_bn


def test_fold_conv_bn_matches_known_affine_map():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    nn.init.constant_(conv.weight, 2.0)
    nn.init.constant_(conv.bias, 1.0)
    bn = nn.BatchNorm2d(1, eps=0.0).eval()
    bn.running_mean.fill_(3.0)
    bn.running_var.fill_(4.0)
    bn.weight.data.fill_(0.5)
    bn.bias.data.fill_(-1.0)
    fused = fold_conv_bn(conv, bn)
    # y = 0.5 * (2x + 1 - 3) / 2 - 1 = 0.5 x - 1.5
    assert fused.weight.item() == pytest.approx(0.5)
    assert fused.bias.item() == pytest.approx(-1.5)


@pytest.mark.parametrize("fusion", ["early", "intermediate", "late"])
def test_folded_network_gives_the_same_features(fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=8))
    with torch.no_grad():  # non-trivial running statistics
        model.train()
        for _ in range(3):
            model(torch.randn(4, 2, 24, 24) * 3 + 1, torch.randn(4, 4, 24, 24) * 2 - 1)
    model.eval()
    folded = fold_batchnorm(model)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert left == 0 and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    s1, s2 = torch.randn(2, 2, 20, 28), torch.randn(2, 4, 20, 28)
    with torch.no_grad():
        want, got = model(s1, s2), folded(s1, s2)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-4, rtol=1e-4)
