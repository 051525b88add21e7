"""``pretrain`` end to end on tiny generated GeoTIFFs: every fusion x method, the run folder, the
checkpoint's data contract, single-sensor data, and resuming an interrupted run exactly."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sarfuse.data.normalise import PAPER_STATS
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.ssl import train as train_module
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import valid_combinations
from sarfuse.ssl.module import PretrainModule
from sarfuse.ssl.train import pretrain

TINY = PretrainConfig(
    crop=16, batch=4, width=4, feat_dim=8, steps=3, patch_size=64, crops_per_patch=2,
    warmup_steps=2,
)  # fmt: skip
FAST = {("intermediate", "pixel"), ("late", "dcca")}  # the rest of the grid is marked slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One 256 x 256 DFC2020-style sample (S1, S2, labels): 16 patches of 64 pixels."""
    return generate(tmp_path_factory.mktemp("train") / "data", size=256, seed=0, layout="dfc2020")


def single_sensor(data: Path, sensor: str) -> Path:
    """A samples.csv over ``data`` that lists only ``sensor``."""
    s1, s2 = next(data.glob("s1_*/*.tif")), next(data.glob("s2_*/*.tif"))
    index = data / f"only_{sensor}.csv"
    path = (s1 if sensor == "s1" else s2).relative_to(data)
    index.write_text(f"s1,s2\n{path if sensor == 's1' else ''},{path if sensor == 's2' else ''}\n")
    return index


def read_log(run: Path) -> list[dict]:
    with (run / "loss.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(
    ("fusion", "method"),
    [
        pytest.param(*combo, marks=() if combo in FAST else pytest.mark.slow)
        for combo in valid_combinations()
    ],
)
def test_every_combination_trains_and_writes_a_run_folder(data, tmp_path, fusion, method):
    cfg = replace(TINY, fusion=fusion, method=method)
    result = pretrain(data, tmp_path / "run", cfg, progress=False)
    run = tmp_path / "run"
    assert {"last.ckpt", "config.json", "loss.csv", "loss.png"} <= {p.name for p in run.iterdir()}
    assert result.steps == 3 and result.checkpoint == run / "last.ckpt"
    rows = read_log(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
    assert result.first_loss is not None and result.last_loss is not None
    ckpt = load(run / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["sarfuse"]["fusion"] == fusion and ckpt["sarfuse"]["method"] == method
    assert ckpt["sarfuse"]["model"]["fusion"] == fusion


def test_the_run_folder_records_config_and_data_contract(data, tmp_path):
    cfg = replace(TINY, steps=2, sp_scales=(100.0, 300.0), s2_bands=("B2", "B3", "B4"))
    pretrain(data, tmp_path / "run", cfg, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert PretrainConfig.from_dict(saved) == replace(cfg, fusion="intermediate")  # auto, resolved
    meta = load(tmp_path / "run" / "last.ckpt")["sarfuse"]
    assert meta["sensors"] == ["s1", "s2"]
    assert meta["s1_bands"] == ["VV", "VH"] and meta["s2_bands"] == ["B2", "B3", "B4"]
    assert meta["stats"] == PAPER_STATS
    assert meta["superpixels"] == [
        {"scale": 100.0, "sigma": 0.5, "min_size": 30},
        {"scale": 300.0, "sigma": 0.5, "min_size": 30},
    ]
    assert meta["patch_size"] == 64
    model = meta["model"]
    assert (model["s1_channels"], model["s2_channels"]) == (2, 3)
    assert (model["width"], model["feat_dim"]) == (4, 8)


def test_the_same_seed_gives_the_same_run(data, tmp_path):
    # bit-identical on CPU; CUDA sums with atomics in any order (test_cuda_runs_... below)
    cfg = replace(TINY, steps=2, device="cpu")
    pretrain(data, tmp_path / "a", cfg, progress=False)
    pretrain(data, tmp_path / "b", cfg, progress=False)
    pretrain(data, tmp_path / "c", replace(cfg, seed=1), progress=False)
    a, b, c = (load(tmp_path / r / "last.ckpt")["state_dict"] for r in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("sensor", ["s1", "s2"])
def test_single_sensor_data_pretrains_with_early_fusion(data, tmp_path, sensor):
    cfg = replace(TINY, fusion="early", steps=2)
    result = pretrain(single_sensor(data, sensor), tmp_path / "run", cfg, progress=False)
    assert result.steps == 2
    meta = load(result.checkpoint)["sarfuse"]
    assert meta["sensors"] == [sensor]
    assert meta["s1_bands" if sensor == "s2" else "s2_bands"] == []
    channels = (meta["model"]["s1_channels"], meta["model"]["s2_channels"])
    assert channels == ((2, 0) if sensor == "s1" else (0, 12))  # every S2 band but B10


@pytest.mark.parametrize(
    ("sensor", "fusion"), [("s1", "early"), ("s2", "early"), (None, "intermediate")]
)
def test_auto_fusion_is_chosen_from_the_sensors_and_saved_resolved(
    data, tmp_path, caplog, sensor, fusion
):
    """With no fusion asked for, one sensor gets early fusion and two get intermediate; the choice
    is logged, and the run folder, the checkpoint and the result never say "auto"."""
    assert TINY.fusion == PretrainConfig().fusion == "auto"
    where = data if sensor is None else single_sensor(data, sensor)
    with caplog.at_level(logging.INFO, logger="sarfuse.ssl.train"):
        result = pretrain(where, tmp_path / "run", replace(TINY, steps=1), progress=False)
    assert f"fusion auto: {fusion} fusion" in caplog.text
    assert result.config.fusion == fusion
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fusion"] == fusion
    ckpt = load(result.checkpoint)
    assert ckpt["sarfuse"]["fusion"] == ckpt["sarfuse"]["model"]["fusion"] == fusion
    assert ckpt["hyper_parameters"]["config"]["fusion"] == fusion


def test_intermediate_fusion_on_s2_only_data_fails_before_any_work(data, tmp_path, monkeypatch):
    def no_superpixels(*args, **kwargs):
        raise AssertionError("superpixels were computed before the fusion was checked")

    monkeypatch.setattr(train_module, "compute_all", no_superpixels)
    run = tmp_path / "run"
    with pytest.raises(SarfuseError, match="needs both Sentinel-1 and Sentinel-2") as err:
        pretrain(single_sensor(data, "s2"), run, replace(TINY, fusion="intermediate"))
    assert "\n" not in str(err.value) and "only S2" in str(err.value)
    assert not run.exists()


def test_an_existing_run_is_not_overwritten(data, tmp_path):
    run = tmp_path / "run"
    pretrain(data, run, replace(TINY, steps=1), progress=False)
    before = (run / "last.ckpt").read_bytes()
    with pytest.raises(SarfuseError, match="already exists.*--resume") as err:
        pretrain(data, run, replace(TINY, steps=1), progress=False)
    assert str(err.value).startswith(str(run / "last.ckpt")) and "\n" not in str(err.value)
    assert (run / "last.ckpt").read_bytes() == before


def test_resume_needs_a_checkpoint(data, tmp_path):
    with pytest.raises(SarfuseError, match="nothing to resume") as err:
        pretrain(data, tmp_path / "run", TINY, resume=True, progress=False)
    assert "\n" not in str(err.value)


def test_resume_from_a_damaged_checkpoint_is_a_one_line_error(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(SarfuseError, match="cannot resume: not a readable checkpoint") as err:
        pretrain(data, run, TINY, resume=True, progress=False)
    assert "\n" not in str(err.value)


def test_resume_with_other_network_settings_is_refused(data, tmp_path):
    run = tmp_path / "run"
    pretrain(data, run, replace(TINY, steps=1), progress=False)
    config = (run / "config.json").read_text()
    with pytest.raises(SarfuseError, match="cannot resume with other settings") as err:
        pretrain(data, run, replace(TINY, steps=2, width=8), resume=True, progress=False)
    assert "model width 4 -> 8" in str(err.value) and "\n" not in str(err.value)
    assert (run / "config.json").read_text() == config  # the run's record is left alone


def test_resuming_reads_the_checkpoint_as_tensors_and_plain_data_only(data, tmp_path, monkeypatch):
    """Lightning reads the checkpoint again to restore the loops and optimiser: that read must
    not unpickle objects either (a crafted file is refused before, by our own read)."""
    run = tmp_path / "run"
    pretrain(data, run, replace(TINY, steps=1), progress=False)
    reads = []
    original = torch.load

    def spy(*args, **kwargs):
        reads.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert pretrain(data, run, replace(TINY, steps=2), resume=True, progress=False).steps == 2
    assert len(reads) >= 2 and all(w is True for w in reads), reads


class Interrupted(RuntimeError):
    """Stands for a crash or a killed job."""


def interrupt_at(monkeypatch, step: int) -> None:
    """Make training raise when it reaches global step ``step`` (after ``step`` optimiser steps)."""
    original = PretrainModule.training_step

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == step:
            raise Interrupted(f"interrupted at step {step}")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(PretrainModule, "training_step", training_step)


RESUME = replace(
    TINY, patch_size=128, crops_per_patch=3, ckpt_every=2, steps=7, ema=0.9, crops=(12,)
)  # fmt: skip


def whole_and_resumed(
    data: Path, tmp_path: Path, monkeypatch, cfg: PretrainConfig, saved_at: int = 4
):
    """Checkpoints of 7 steps in one go and of 5 steps, a crash and a resume from the last
    checkpoint, written at step ``saved_at``."""
    whole = pretrain(data, tmp_path / "whole", cfg, progress=False)
    run = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)
        with pytest.raises(Interrupted):
            pretrain(data, run, cfg, progress=False)
    assert load(run / "last.ckpt")["global_step"] == saved_at
    assert [int(r["step"]) for r in read_log(run)] == [1, 2, 3, 4, 5]
    resumed = pretrain(data, run, cfg, resume=True, progress=False)
    assert whole.steps == resumed.steps == 7
    assert [r["step"] for r in read_log(run)] == [str(s) for s in range(1, 8)]
    return whole, resumed


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold the same step, weights, optimiser, schedule and RNG, bit for bit."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for i, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][i][name]), (i, name)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def logged(run: Path) -> list[tuple[str, str, str]]:
    return [(r["step"], r["epoch"], r["loss"]) for r in read_log(run)]


def test_an_interrupted_run_resumes_exactly(data, tmp_path, monkeypatch):
    """Resuming is bit-exact on CPU.

    An epoch is 3 steps (4 patches x 3 crops / batch 4), so the resumed run restarts mid-epoch
    and crosses an epoch end; the EMA teacher and multi-crop sizes must come back too.
    """
    run = tmp_path / "resumed"
    whole, resumed = whole_and_resumed(data, tmp_path, monkeypatch, replace(RESUME, device="cpu"))

    assert logged(run) == logged(tmp_path / "whole")
    a, b = load(whole.checkpoint), load(resumed.checkpoint)
    assert a["global_step"] == b["global_step"] == 7 and a["epoch"] == b["epoch"] == 2
    assert any(k.startswith("method.teacher.") for k in a["state_dict"])
    assert_same_state(a, b)


def test_a_run_resumed_from_an_epoch_end_reaches_its_steps_exactly(data, tmp_path, monkeypatch):
    """With no step checkpoints the last one is written at an epoch end (step 3 of 7): the
    resumed run ends at step 7 as the run done in one go, and resuming it again trains no more."""
    cfg = replace(RESUME, device="cpu", ckpt_every=100)
    whole, resumed = whole_and_resumed(data, tmp_path, monkeypatch, cfg, saved_at=3)
    run = tmp_path / "resumed"
    assert logged(run) == logged(tmp_path / "whole")
    assert_same_state(load(whole.checkpoint), load(resumed.checkpoint))
    assert pretrain(data, run, cfg, resume=True, progress=False).steps == 7
    assert len(read_log(run)) == 7


def test_without_steps_a_run_makes_its_epochs_of_steps(data, tmp_path):
    """16 patches x 2 crops / batch 4: 8 steps an epoch, 16 for two, each logged in its epoch."""
    result = pretrain(data, tmp_path / "run", replace(TINY, steps=None, epochs=2), progress=False)
    assert result.steps == 16
    assert [r["epoch"] for r in read_log(tmp_path / "run")] == ["0"] * 8 + ["1"] * 8


@pytest.mark.parametrize("first", [5, 6])  # a finished run that ends mid-epoch, at an epoch end
def test_a_finished_run_extended_to_more_steps_equals_the_longer_run(data, tmp_path, first):
    """``--resume --steps 10`` on a finished run of ``first`` steps: the warm-up schedule does
    not depend on the run's length, so the result is the 10-step run's, bit for bit."""
    cfg = replace(RESUME, device="cpu", steps=10)
    longer = pretrain(data, tmp_path / "whole", cfg, progress=False)
    run = tmp_path / "extended"
    pretrain(data, run, replace(cfg, steps=first), progress=False)
    assert pretrain(data, run, cfg, resume=True, progress=False).steps == 10
    assert logged(run) == logged(tmp_path / "whole")
    assert_same_state(load(longer.checkpoint), load(run / "last.ckpt"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_resume_up_to_the_order_of_float_sums(data, tmp_path, monkeypatch):
    """On CUDA, atomics (index_add_, cuDNN backward) sum in any order, so runs agree to rounding.

    A wrong RNG or sampler state after the resume would change the crops: differences of the
    size of the loss itself, far beyond these tolerances.
    """
    cfg = replace(RESUME, device="cuda")
    whole, resumed = whole_and_resumed(data, tmp_path, monkeypatch, cfg)
    loss = [float(r["loss"]) for r in read_log(tmp_path / "whole")]
    again = [float(r["loss"]) for r in read_log(tmp_path / "resumed")]
    assert np.allclose(loss, again, rtol=1e-3), (loss, again)
    a, b = load(whole.checkpoint)["state_dict"], load(resumed.checkpoint)["state_dict"]
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-3, worst


@pytest.mark.slow
def test_loader_workers_do_not_change_the_run(data, tmp_path):
    cfg = replace(TINY, steps=4)
    pretrain(data, tmp_path / "main", cfg, progress=False)
    pretrain(data, tmp_path / "workers", replace(cfg, workers=2), progress=False)
    a, b = (load(tmp_path / r / "last.ckpt")["state_dict"] for r in ("main", "workers"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_loss_falls_over_forty_steps(data, tmp_path):
    """Mean of the last 10 logged losses against the first 10 (the crops make single steps noisy;
    seeds 0, 1, 2 fall by 1.2, 0.38, 0.65)."""
    cfg = replace(TINY, crop=24, batch=8, width=8, feat_dim=16, steps=40, lr=1e-3, warmup_steps=5)
    result = pretrain(data, tmp_path / "run", cfg, progress=False)
    assert result.steps == 40
    assert result.last_loss < result.first_loss - 0.2, (result.first_loss, result.last_loss)
