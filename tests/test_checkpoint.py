"""Loading pretrained checkpoints and extracting frozen per-pixel features from them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sarfuse.checkpoint import Pretrained, features, load_pretrained
from sarfuse.data.normalise import PAPER_STATS
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

D = 8
S2_BANDS = ("B2", "B3", "B4", "B8")
TINY = PretrainConfig(
    crop=16, batch=4, width=4, feat_dim=D, steps=2, patch_size=64, s2_bands=S2_BANDS
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate(
        tmp_path_factory.mktemp("ckpt") / "data", size=128, seed=2, layout="dfc2020", patch=128
    )


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """A run folder of two intermediate-fusion pixel-contrast steps on S1 + S2."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    pretrain(data, out, TINY, progress=False)
    return out


def raw_inputs(batch: int = 2, size: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """S1 in dB (B, 2, H, W) and S2 reflectance x 10000 (B, 4, H, W), partly outside the clips."""
    g = torch.Generator().manual_seed(seed)
    s1 = torch.rand(batch, 2, size, size, generator=g) * 30 - 28  # [-28, 2] dB
    s2 = torch.rand(batch, 4, size, size, generator=g) * 11000  # [0, 11000]
    return s1, s2


def paper_normalise(x: torch.Tensor, sensor: str, bands: tuple[str, ...]) -> torch.Tensor:
    """The paper's normalisation, written out: clip, then standardise each band."""
    stats = PAPER_STATS[sensor]
    mean = torch.tensor([stats["mean"][b] for b in bands])[:, None, None]
    std = torch.tensor([stats["std"][b] for b in bands])[:, None, None]
    return (x.clamp(*PAPER_STATS["clip"][sensor]) - mean) / std


def test_features_are_per_pixel_maps(run):
    s1, s2 = raw_inputs(batch=3, size=20)  # 20 is no multiple of the encoder's stride
    out = features(run / "last.ckpt", s1, s2)
    assert out.shape == (3, D, 20, 20)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not out.requires_grad


def test_features_equal_the_network_on_normalised_input(run):
    s1, s2 = raw_inputs()
    net = load_pretrained(run / "last.ckpt")
    s1n, s2n = paper_normalise(s1, "s1", ("VV", "VH")), paper_normalise(s2, "s2", S2_BANDS)
    with torch.no_grad():
        expected = net.model.eval()(s1n, s2n)["features"]
    torch.testing.assert_close(features(run / "last.ckpt", s1, s2), expected)
    torch.testing.assert_close(features(net, s1n, s2n, normalised=True), expected)


def test_a_single_image_gives_a_batch_of_one_and_does_not_see_its_neighbours(run):
    s1, s2 = raw_inputs(batch=2)
    batch = features(run, s1, s2)  # a run folder stands for its last.ckpt
    single = features(run, s1[1].numpy(), s2[1].numpy())  # (C, H, W) numpy arrays
    assert single.shape == (1, D, 20, 20)
    torch.testing.assert_close(single[0], batch[1])  # eval mode: BatchNorm uses running stats


def test_a_missing_sensor_input_is_a_one_line_error(run):
    s1, s2 = raw_inputs()
    with pytest.raises(SarfuseError, match="needs S1 input") as err:
        features(run, None, s2)
    assert str(err.value).startswith(str((run / "last.ckpt").resolve()))
    assert "\n" not in str(err.value)


def test_wrong_band_count_is_a_one_line_error(run):
    s1, _ = raw_inputs()
    with pytest.raises(SarfuseError, match="expected 4 bands") as err:
        features(run, s1, torch.zeros(2, 13, 20, 20))
    assert "\n" not in str(err.value)


def test_a_single_sensor_checkpoint_reads_only_its_sensor(data, tmp_path):
    s1_file = next(data.glob("s1_*/*.tif")).relative_to(data)
    (data / "s1_only.csv").write_text(f"s1,s2\n{s1_file},\n")
    out = tmp_path / "s1run"
    pretrain(data / "s1_only.csv", out, replace(TINY, fusion="early"), progress=False)
    net = load_pretrained(out)
    assert net.sensors == ("s1",) and net.feature_dim == D
    s1, s2 = raw_inputs()
    only = features(net, s1, None)
    assert only.shape == (2, D, 20, 20)
    torch.testing.assert_close(features(net, s1, s2), only)  # S2 is ignored, not an error


def test_randomised_keeps_the_architecture_with_other_weights(run):
    net = load_pretrained(run)
    rand = net.randomised(seed=0)
    assert isinstance(rand, Pretrained) and "random" in rand.path
    assert rand.contract == net.contract and rand.model.config == net.model.config
    trained, fresh = net.model.state_dict(), rand.model.state_dict()
    assert trained.keys() == fresh.keys()
    assert all(trained[k].shape == fresh[k].shape for k in trained)
    weights = [k for k in trained if k.endswith("weight")]
    changed = sum(not torch.equal(trained[k], fresh[k]) for k in weights)
    assert changed > 0.9 * len(weights)  # two warm-up steps leave a few tensors untouched
    s1, s2 = raw_inputs()
    assert not torch.allclose(features(rand, s1, s2), features(net, s1, s2))
    again, other = net.randomised(seed=0), net.randomised(seed=1)
    assert all(torch.equal(fresh[k], again.model.state_dict()[k]) for k in fresh)
    assert not torch.equal(fresh[weights[0]], other.model.state_dict()[weights[0]])


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(SarfuseError, match="checkpoint not found") as err:
        load_pretrained(tmp_path / "nope.ckpt")
    assert str(err.value).startswith(str(tmp_path / "nope.ckpt")) and "\n" not in str(err.value)
    with pytest.raises(SarfuseError, match="checkpoint not found"):
        load_pretrained(tmp_path)  # a folder without last.ckpt


def test_a_file_that_is_no_checkpoint_is_a_one_line_error(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("these are not weights\n")
    with pytest.raises(SarfuseError, match="not a readable checkpoint") as err:
        load_pretrained(text)
    assert "notes.ckpt" in str(err.value) and "\n" not in str(err.value)


def test_a_torch_file_of_another_program_is_refused(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(SarfuseError, match="not a sarfuse pretraining checkpoint") as err:
        load_pretrained(other)
    assert "\n" not in str(err.value)


def test_a_truncated_checkpoint_is_a_one_line_error(run, tmp_path):
    whole = (run / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SarfuseError, match="not a readable checkpoint") as err:
        load_pretrained(cut)
    assert "cut.ckpt" in str(err.value) and "\n" not in str(err.value)


def test_a_rewritten_checkpoint_is_loaded_again(run, tmp_path):
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes((run / "last.ckpt").read_bytes())
    first = load_pretrained(copy)
    assert load_pretrained(copy) is first  # cached while unchanged
    state = torch.load(copy, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] + 1.0
    torch.save(state, copy)
    second = load_pretrained(copy)
    assert second is not first
    assert not np.allclose(
        first.model.state_dict()[key.removeprefix("model.")].numpy(),
        second.model.state_dict()[key.removeprefix("model.")].numpy(),
    )


def test_image_level_checkpoints_are_probed_through_hypercolumns(data, tmp_path):
    out = tmp_path / "dcca"
    pretrain(data, out, replace(TINY, method="dcca_image"), progress=False)
    net = load_pretrained(out)
    assert net.probe == "hypercolumn" and net.feature_dim == 15 * 4  # width 4: 2 x (2+4+8+16)
    s1, s2 = raw_inputs()
    got = features(net, s1, s2)
    assert got.shape == (2, net.feature_dim, 20, 20)
    s1n, s2n = paper_normalise(s1, "s1", ("VV", "VH")), paper_normalise(s2, "s2", S2_BANDS)
    with torch.no_grad():
        torch.testing.assert_close(got, net.model.eval().hypercolumn(s1n, s2n))
    mcl = Pretrained(net.model, replace(net.contract, method="mcl"), "mcl")
    assert mcl.probe == "hypercolumn"
    assert Pretrained(net.model, replace(net.contract, method="dcca"), "dcca").feature_dim == D


def test_projection_heads_stay_out_of_the_probed_network(data, tmp_path):
    out = tmp_path / "proj"
    pretrain(data, out, replace(TINY, projection=True, w_cross=1.0), progress=False)
    state = torch.load(out / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("method.heads.features.") for k in state)
    net = load_pretrained(out)  # only the network's weights, the heads are left behind
    assert net.feature_dim == D and features(net, *raw_inputs()).shape == (2, D, 20, 20)


def test_a_checkpoint_that_would_run_code_is_refused_unread(run, tmp_path, payload):
    """Checkpoints are shared: one holding a pickled object is refused, its payload never run."""
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    ckpt["extra"] = payload
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    with pytest.raises(SarfuseError, match="refused: it holds a Python object") as err:
        load_pretrained(crafted)
    assert str(err.value).startswith(str(crafted)) and "\n" not in str(err.value)
    assert not payload.marker.exists()
