"""Every valid fusion x method trains what its probe reads: one loss backward on a tiny batch
gives a non-zero gradient to every parameter that influences the probed features."""

from __future__ import annotations

import pytest
import torch

from sarfuse.models import ModelConfig, build_model
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import build_method, valid_combinations
from sarfuse.ssl.views import sample_view_params

CROP, MARGIN, B = 16, 4, 4
CONTEXT = CROP + 2 * MARGIN
# the pixel method's options that change its loss, on the fusions they apply to
PIXEL_OPTIONS = [
    ("intermediate", "pixel", {"w_cross": 1.0, "projection": True}),
    ("late", "pixel", {"w_cross": 1.0, "projection": True}),
    ("early", "pixel", {"projection": True, "ema": 0.9}),
]
CASES = [(f, m, {}) for f, m in valid_combinations()] + PIXEL_OPTIONS


def tiny_batch() -> dict:
    """Two sensors and 6 x 6 block superpixels."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(CONTEXT), torch.arange(CONTEXT), indexing="ij")
    return {
        "s1": torch.randn(B, 2, CONTEXT, CONTEXT, generator=g),
        "s2": torch.randn(B, 4, CONTEXT, CONTEXT, generator=g),
        "valid": torch.ones(B, CONTEXT, CONTEXT, dtype=torch.bool),
        "segments": ((ys // 6) * 10 + xs // 6).expand(B, -1, -1),
    }


def probed_parameters(model, kind: str, batch: dict) -> set[str]:
    """Names of the parameters in the autograd graph of the map the probe reads."""
    model.zero_grad(set_to_none=True)
    out = model.probe(batch["s1"][..., :CROP, :CROP], batch["s2"][..., :CROP, :CROP], kind)
    out.sum().backward()
    names = {n for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return names


@pytest.mark.parametrize(("fusion", "method", "opts"), CASES)
def test_the_loss_trains_every_probed_parameter(fusion, method, opts):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=8))
    meth = build_method(PretrainConfig(fusion, method, **opts), model=model)
    batch = tiny_batch()
    probed = probed_parameters(model, meth.probe, batch)
    assert len(probed) > len(list(model.parameters())) // 2  # the probed path is most of the net
    params = sample_view_params(B, MARGIN, torch.Generator().manual_seed(3))
    meth.loss(model, batch, params)["loss"].backward()
    grads = dict(model.named_parameters())
    untrained = sorted(
        n for n in probed if grads[n].grad is None or not grads[n].grad.abs().sum() > 0
    )
    assert not untrained, f"{method} on {fusion} leaves probed parameters untrained: {untrained}"


@pytest.mark.parametrize("fusion", ["intermediate", "late"])
def test_image_level_methods_are_probed_through_the_encoders(fusion):
    model = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=8))
    for method in ("mcl", "dcca_image"):
        probed = probed_parameters(
            model, build_method(PretrainConfig(method=method)).probe, tiny_batch()
        )
        assert not any("decoder" in n or "head" in n for n in probed)
        assert any("encoder" in n for n in probed)
