"""Every valid fusion x method trains on a tiny batch; invalid ones fail with one-line reasons."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from torch import nn

from sarfuse.errors import SarfuseError
from sarfuse.models import FUSIONS, ModelConfig, build_model
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import METHODS, EMATeacher, MethodName, build_method, valid_combinations
from sarfuse.ssl.views import ViewParams, sample_view_params

CROP, MARGIN, B = 16, 4, 2
CONTEXT = CROP + 2 * MARGIN
COMBOS = valid_combinations()
EXPECTED_PARTS = {
    "pixel": {"loss", "superpixel", "image"},
    "mcl": {"loss"},
    "dcca": {"loss", "correlation"},
    "dcca_image": {"loss", "correlation"},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks run faster on one thread, and a second OpenMP thread stalls whenever other
    processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_batch(scales: int = 1, seed: int = 0) -> dict:
    """Two sensors, a few invalid pixels and 6 x 6 block superpixels (shifted per scale)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(CONTEXT), torch.arange(CONTEXT), indexing="ij")
    segments = torch.stack([((ys + s) // 6) * 10 + (xs + s) // 6 for s in range(scales)])
    valid = torch.ones(B, CONTEXT, CONTEXT, dtype=torch.bool)
    valid[0, :3] = False
    return {
        "s1": torch.randn(B, 2, CONTEXT, CONTEXT, generator=g),
        "s2": torch.randn(B, 4, CONTEXT, CONTEXT, generator=g),
        "valid": valid,
        "segments": segments.expand(B, -1, -1, -1).squeeze(1),
    }


def fixed_params() -> ViewParams:
    return sample_view_params(B, MARGIN, torch.Generator().manual_seed(3))


def setup(fusion: str, method: str, **opts) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=8))
    return model, build_method(PretrainConfig(fusion, method, **opts), model=model)


def bare_method(name: str = "pixel", **opts) -> object:
    """A method not yet set up for a network (no EMA teacher, no heads)."""
    return build_method(PretrainConfig(method=name, **opts))


def test_registry_lists_the_allowed_pairs():
    assert set(METHODS) == {"pixel", "mcl", "dcca", "dcca_image"}
    assert get_args(MethodName) == tuple(METHODS)
    assert set(COMBOS) == {(fusion, "pixel") for fusion in FUSIONS} | {  # pixel trains any
        ("intermediate", "mcl"),
        ("late", "mcl"),
        ("late", "dcca"),
        ("intermediate", "dcca_image"),
        ("late", "dcca_image"),
    }


@pytest.mark.parametrize(("fusion", "method"), COMBOS)
def test_forward_backward(fusion, method):
    model, meth = setup(fusion, method)
    parts = meth.loss(model, tiny_batch(), fixed_params())
    assert set(parts) == EXPECTED_PARTS[method]
    assert all(v.shape == () and torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize(("fusion", "method"), COMBOS)
def test_adam_steps_lower_the_loss(fusion, method):
    model, meth = setup(fusion, method)
    batch, params = tiny_batch(), fixed_params()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = meth.loss(model, batch, params)["loss"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("fusion", "method"), [(f, m) for f in FUSIONS for m in METHODS])
def test_invalid_combinations_are_refused(fusion, method):
    if (fusion, method) in COMBOS:
        return
    with pytest.raises(
        SarfuseError, match=f"cannot train {fusion} fusion because .*; use --fusion"
    ):
        build_method(PretrainConfig(fusion, method))
    model = build_model(ModelConfig(fusion, 2, 4, width=4, feat_dim=8))
    with pytest.raises(SarfuseError, match="cannot train"):
        build_method(PretrainConfig(method=method)).loss(model, tiny_batch(), fixed_params())


@pytest.mark.parametrize("sensor", ["s1", "s2"])
def test_single_sensor_early_pixel(sensor):
    s1, s2 = (2, 0) if sensor == "s1" else (0, 4)
    model = build_model(ModelConfig("early", s1, s2, width=4))
    batch = tiny_batch()
    del batch["s2" if sensor == "s1" else "s1"]
    parts = build_method(PretrainConfig(), model=model).loss(model, batch, fixed_params())
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"]) and parts["superpixel"] > 0


def test_multi_scale_segments_average_the_scales(monkeypatch):
    model, meth = setup("early", "pixel")
    calls = []
    contrast = meth.contrast
    monkeypatch.setattr(meth, "contrast", lambda a, b: calls.append(len(a)) or contrast(a, b))
    parts = meth.loss(model, tiny_batch(scales=2), fixed_params())
    assert len(calls) == 3  # two superpixel scales and the image term
    assert calls[-1] == B and all(n > B for n in calls[:2])
    assert torch.isfinite(parts["superpixel"])


class ShiftEquivariant(nn.Module):
    """A per-pixel 'network' (1x1 conv): aligned view-2 features must equal view-1 features."""

    fusion = "early"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 8, 1)

    def forward(self, s1, s2):
        features = self.conv(torch.cat([s1, s2], 1))
        return {"features": features, "image": features.mean((2, 3))}


def test_pixel_pairs_describe_the_same_ground(monkeypatch):
    model, meth = ShiftEquivariant(), bare_method()
    seen = []
    monkeypatch.setattr(meth, "contrast", lambda a, b: seen.append((a, b)) or (a - b).abs().sum())
    meth.loss(model, tiny_batch(), fixed_params())
    superpixels, _ = seen
    torch.testing.assert_close(superpixels[0], superpixels[1])


def test_late_pixel_pairs_cross_sensors(monkeypatch):
    model, meth = setup("late", "pixel")
    model.eval()
    seen = []
    contrast = meth.contrast
    monkeypatch.setattr(meth, "contrast", lambda a, b: seen.append((a, b)) or contrast(a, b))
    batch = tiny_batch()
    params = ViewParams(
        *(torch.zeros(B, dtype=t) for t in (torch.long,) * 2 + (torch.bool,) * 2), 4
    )
    meth.loss(model, batch, params)  # no shift, no flip: view 2 = view 1
    out = model(batch["s1"][..., 4:-4, 4:-4], batch["s2"][..., 4:-4, 4:-4])
    image_a, image_b = seen[-2]
    torch.testing.assert_close(image_a, out["s1_image"])
    torch.testing.assert_close(image_b, out["s2_image"])


def test_ema_teacher_follows_the_student():
    student = nn.Linear(2, 1)
    teacher = EMATeacher(student, momentum=0.9)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = teacher.module.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student)
    torch.testing.assert_close(teacher.module.weight, 0.9 * before + 0.1 * student.weight)
    with pytest.raises(SarfuseError, match="momentum"):
        EMATeacher(student, momentum=1.0)


def test_pixel_with_teacher_trains_the_student_only():
    model, meth = setup("intermediate", "pixel", ema=0.5)
    before = [p.clone() for p in meth.teacher.parameters()]
    parts = meth.loss(model, tiny_batch(), fixed_params())
    parts["loss"].backward()
    assert all(p.grad is None for p in meth.teacher.parameters())
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    meth.after_step(model)
    assert any(
        not torch.equal(a, p) for a, p in zip(before, meth.teacher.parameters(), strict=True)
    )
    with pytest.raises(SarfuseError, match="no EMA teacher"):
        bare_method(ema=0.5).loss(model, tiny_batch(), fixed_params())


def test_methods_read_their_settings_from_the_config():
    with pytest.raises(SarfuseError, match="unknown method 'simclr'"):
        bare_method("simclr")
    cfg = PretrainConfig(temperature=0.2, tau_plus=0.05, beta=2.0, w_image=0.5, ema=0.9)
    pixel = build_method(cfg)
    assert pixel.options == cfg.contrast and (pixel.w_image, pixel.ema) == (0.5, 0.9)
    assert bare_method("mcl", temperature=0.3).options.temperature == 0.3
    model, meth = setup("early", "pixel")
    batch = tiny_batch()
    del batch["segments"]
    with pytest.raises(SarfuseError, match="needs superpixel segments"):
        meth.loss(model, batch, fixed_params())


@pytest.mark.parametrize("fusion", ["intermediate", "late"])
def test_cross_term_contrasts_the_sensors_inside_each_view(fusion, monkeypatch):
    model, meth = setup(fusion, "pixel", w_cross=0.5)
    seen = []
    contrast = meth.contrast
    monkeypatch.setattr(meth, "contrast", lambda a, b: seen.append((a, b)) or contrast(a, b))
    parts = meth.loss(model, tiny_batch(), fixed_params())
    (a1, b1), (a2, b2) = seen[-2:]  # view 1's S1 vs S2, then view 2's
    assert a1.shape == b1.shape == (B, model.out_dims["s1_image"])
    assert not torch.equal(a1, a2)
    expected = parts["superpixel"] + parts["image"] + 0.5 * parts["cross"]
    torch.testing.assert_close(parts["loss"], expected)


def test_cross_term_needs_sensor_branches():
    model = build_model(ModelConfig("early", 2, 4, width=4, feat_dim=8))
    with pytest.raises(SarfuseError, match="w_cross needs separate S1 and S2 image features"):
        build_method(PretrainConfig(w_cross=1.0), model=model)
    model, meth = setup("intermediate", "pixel")
    assert "cross" not in meth.loss(model, tiny_batch(), fixed_params())  # off by default


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_projection_heads_sit_between_features_and_contrast(fusion, monkeypatch):
    model, meth = setup(fusion, "pixel", projection=True)
    names = {"early": {"features"}, "late": {"s1_features", "s2_features"}}[fusion]
    assert set(meth.heads) == names
    seen = []
    monkeypatch.setattr(meth, "contrast", lambda a, b: seen.append((a, b)) or (a - b).abs().sum())
    meth.loss(model, tiny_batch(), fixed_params())["loss"].backward()
    a, b = seen[0]  # the first superpixel pair: pooled unit vectors have norm <= 1
    assert a.norm(dim=1).max() <= 1 + 1e-5 and b.norm(dim=1).max() <= 1 + 1e-5
    assert all(h.conv.weight.grad.abs().sum() > 0 for h in meth.heads.values())
    with pytest.raises(SarfuseError, match="no heads"):
        bare_method(projection=True).loss(model, tiny_batch(), fixed_params())


def test_dcca_image_correlates_projected_image_features():
    torch.manual_seed(0)
    model = build_model(ModelConfig("intermediate", 2, 4, width=4, feat_dim=8))
    meth = bare_method("dcca_image")
    meth.dim = 3  # the authors' 10 needs a batch of more than 10 crops
    meth.setup(model)
    batch = tiny_batch()
    parts = meth.loss(model, batch, fixed_params())
    assert 0 < parts["correlation"] <= 3
    assert {k: h.out_features for k, h in meth.heads.items()} == {"s1_image": 3, "s2_image": 3}
