"""Fusion networks: one factory, output contract, single-sensor rules, config round trip."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from sarfuse.errors import SarfuseError
from sarfuse.models import (
    FUSIONS,
    FusionChoice,
    FusionName,
    ModelConfig,
    build_model,
    hypercolumn,
    resolve_fusion,
)


def inputs(b: int = 2, h: int = 12, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(b, 2, h, w), torch.randn(b, 4, h, w)


EXTRA_KEYS = {
    "early": set(),
    "intermediate": {"s1_image", "s2_image"},
    "late": {"s1_features", "s2_features", "s1_image", "s2_image"},
}


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_outputs_follow_the_contract(fusion):
    net = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=6))
    out = net(*inputs())
    assert set(out) == {"features", "image"} | EXTRA_KEYS[fusion]
    assert out["features"].shape == (2, 6, 12, 10) and net.feature_dim == 6
    assert out["image"].shape == (2, 6)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["features"].mean().backward()


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_both_sensors_shape_the_features(fusion):
    net = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=6))
    s1, s2 = (t.requires_grad_() for t in inputs())
    net(s1, s2)["features"].square().mean().backward()
    assert s1.grad.abs().sum() > 0 and s2.grad.abs().sum() > 0


def test_late_features_concatenate_the_branches():
    out = build_model(ModelConfig("late", 2, 4, width=4, feat_dim=6))(*inputs())
    assert out["s1_features"].shape == (2, 3, 12, 10)
    torch.testing.assert_close(
        out["features"], torch.cat([out["s1_features"], out["s2_features"]], 1)
    )
    torch.testing.assert_close(out["image"], torch.cat([out["s1_image"], out["s2_image"]], 1))


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_config_rebuilds_the_same_network(fusion):
    net = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=6, norm="group"))
    copy = build_model(net.cfg)
    copy.load_state_dict(net.state_dict())
    net.eval(), copy.eval()
    s1, s2 = inputs(1)
    torch.testing.assert_close(copy(s1, s2)["features"], net(s1, s2)["features"])
    assert net.config["fusion"] == fusion and net.config["width"] == 4


@pytest.mark.parametrize(("s1_ch", "s2_ch", "only"), [(0, 4, "S2"), (2, 0, "S1")])
def test_early_fusion_on_a_single_sensor(s1_ch, s2_ch, only):
    net = build_model(ModelConfig("early", s1_ch, s2_ch, width=4, feat_dim=6))
    s1, s2 = inputs()
    out = net(s1 if s1_ch else None, s2 if s2_ch else None)
    assert out["features"].shape == (2, 6, 12, 10)
    for fusion in ("intermediate", "late"):
        with pytest.raises(SarfuseError, match=f"has only {only} \\(use --fusion early\\)"):
            build_model(ModelConfig(fusion, s1_ch, s2_ch))


def test_wrong_inputs_are_refused():
    s1, s2 = inputs()
    with pytest.raises(SarfuseError, match="expects S2 of shape"):
        build_model(ModelConfig("early", 2, 3, width=4))(s1, s2)
    with pytest.raises(SarfuseError, match="needs S1 input"):
        build_model(ModelConfig("late", 2, 4, width=4))(None, s2)
    with pytest.raises(SarfuseError, match="has no S1 input"):
        build_model(ModelConfig("early", 0, 4, width=4))(s1, s2)


def test_bad_options_are_refused():
    with pytest.raises(SarfuseError, match="unknown fusion 'middle'"):
        build_model(ModelConfig("middle", 2, 4))
    with pytest.raises(SarfuseError, match="even width"):
        build_model(ModelConfig("intermediate", 2, 4, width=5))
    with pytest.raises(SarfuseError, match="even feature size"):
        build_model(ModelConfig("late", 2, 4, feat_dim=7))
    with pytest.raises(SarfuseError, match="needs input bands"):
        build_model(ModelConfig("early", 0, 0))


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_out_dims_name_every_output_and_its_size(fusion):
    net = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=6))
    out = net(*inputs())
    assert {k: v.shape[1] for k, v in out.items()} == net.out_dims


HYPER_DIMS = {"early": 15 * 4, "intermediate": 15 * 4, "late": 2 * 15 * 4}  # sum of level widths


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_hypercolumns_stack_every_encoder_level_at_full_size(fusion):
    net = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=6))
    s1, s2 = inputs()  # 12 x 10: padded to 16 x 16 inside, cropped back
    hyper = net.probe(s1, s2, "hypercolumn")
    assert (
        hyper.shape == (2, HYPER_DIMS[fusion], 12, 10) == (2, net.probe_dim("hypercolumn"), 12, 10)
    )
    levels = net.encode(s1, s2)
    first = levels[0].shape[1]
    torch.testing.assert_close(hyper[:, :first], levels[0][..., :12, :10])  # full-size level as is
    assert torch.equal(net.probe(s1, s2), net(s1, s2)["features"])
    assert net.probe_dim() == 6


def test_hypercolumn_upsamples_coarse_levels_smoothly():
    coarse = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    fine = hypercolumn([coarse], (1, 4))
    torch.testing.assert_close(fine, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))


@pytest.mark.parametrize(
    ("fusion", "sensors", "expected"),
    [
        ("auto", ("s1", "s2"), "intermediate"),
        ("auto", ("s2",), "early"),
        ("auto", ("s1",), "early"),
        ("late", ("s1", "s2"), "late"),
        ("early", ("s1", "s2"), "early"),
    ],
)
def test_resolve_fusion(fusion, sensors, expected):
    assert resolve_fusion(fusion, sensors) == expected


def test_fusion_names_are_the_registry_keys():
    assert get_args(FusionName) == tuple(FUSIONS)
    assert get_args(FusionChoice) == ("auto", *FUSIONS)


def test_model_config_reads_checkpoint_metadata():
    net = build_model(ModelConfig("late", 2, 4, width=4, feat_dim=6))
    saved = {**net.config, "blocks": list(net.config["blocks"])}  # as older metadata may hold it
    assert ModelConfig(**saved) == net.cfg
    with pytest.raises(TypeError):
        ModelConfig(**saved, depth=3)  # unknown metadata is not silently dropped
