"""The ``sarfuse`` command line: help on every command, the version, the happy paths on tiny
generated data, and bad input turned into one ``error:`` line with exit code 2 and no traceback."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.main import get_command
from typer.testing import CliRunner, Result

from sarfuse import __version__
from sarfuse.cli import app
from sarfuse.cli.workflows import ROUTES
from sarfuse.data.layouts import discover
from sarfuse.experiment import ExperimentConfig
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.tiling import tile_windows
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.runconfig import field_default, load_config
from sarfuse.runtime import resolve_precision, torch_device
from sarfuse.ssl.config import PretrainConfig

COMMANDS = dict(get_command(app).commands)
TINY_PRETRAIN = (
    "--steps", 2, "--crop", 16, "--batch", 4, "--width", 4, "--feat-dim", 8, "--patch-size", 64,
    "--device", "cpu",
)  # fmt: skip
FAST_PROBE = ["--epochs", "1", "--labels", "2", "--patch-size", "128", "--device", "cpu"]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def data(synthetic) -> Path:
    """A 512 x 512 synthetic scene in the DFC2020 layout: 4 samples of 256 x 256 (S1, S2, dfc)."""
    return synthetic(size=512)


@pytest.fixture(scope="module")
def small(synthetic) -> Path:
    """A smaller scene than ``data``, with the same sensors and bands."""
    return synthetic(size=256, seed=1)


@pytest.fixture(scope="module")
def pretrain_run(small: Path, tmp_path_factory) -> tuple[Path, Result]:
    """``sarfuse pretrain`` of a tiny network for two steps on ``small``."""
    root = tmp_path_factory.mktemp("cli-run")
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run outside the autouse cache one
        mp.setenv("SARFUSE_CACHE", str(root / "cache"))
        result = invoke("pretrain", small, "--out", root / "run", *TINY_PRETRAIN)
    return root / "run", result


@pytest.fixture(scope="module")
def checkpoint(pretrain_run: tuple[Path, Result]) -> Path:
    run, result = pretrain_run
    assert result.exit_code == 0, (result.output, result.exception)
    return run / "last.ckpt"


@pytest.fixture(scope="module")
def pretrained_probe(data: Path, checkpoint: Path, tmp_path_factory) -> Path:
    """A probe trained on the tiny network's features (one epoch)."""
    out = tmp_path_factory.mktemp("cli-probe")
    cfg = ProbeConfig(
        labels=2, patch_size=128, epochs=1, features="pretrained", classifier="linear",
        self_train=False,
    )  # fmt: skip
    run_probe(discover(data), out, cfg, checkpoint, progress=False)
    return out


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="sarfuse")


def assert_one_error(result: Result, *fragments: str) -> str:
    """Exit code 2, no traceback, and one ``error:`` line naming what went wrong.

    Progress bars may precede it on stderr; they end in a carriage return or a newline, so the
    error is one of the pieces between those.
    """
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    pieces = [p.strip() for p in re.split(r"[\r\n]", ANSI.sub("", result.stderr)) if p.strip()]
    errors = [p for p in pieces if "error" in p.lower()]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line.startswith("error: ") and line == pieces[-1], result.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def mutated(data: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    """A copy of ``data`` with ``change`` applied to it."""
    copy_dir = tmp_path / "bad"
    shutil.copytree(data, copy_dir)
    change(copy_dir)
    return copy_dir


def rewrite(path: Path, transform_array=None, **profile_changes) -> None:
    """Rewrite a GeoTIFF with a changed profile and/or changed pixels."""
    with rasterio.open(path) as src:
        array, profile = src.read(), src.profile
    if transform_array is not None:
        array = transform_array(array)
    with rasterio.open(path, "w", **{**profile, **profile_changes}) as dst:
        dst.write(array)


S1_P2 = "s1_0/ROIs0000_test_s1_0_p2.tif"
S2_P2 = "s2_0/ROIs0000_test_s2_0_p2.tif"
DFC_P2 = "dfc_0/ROIs0000_test_dfc_0_p2.tif"


# --- help and version -----------------------------------------------------------------------


def test_app_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Usage: sarfuse" in result.output
    for name in COMMANDS:
        assert name in result.output
    assert set(COMMANDS) == {
        "synth", "stats", "superpixels", "pretrain", "probe", "map", "map-many", "export",
        "experiment", "demo",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_lists_its_options(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: sarfuse {name}" in result.output
    options = [o for p in COMMANDS[name].params for o in p.opts if o.startswith("--")]
    assert options
    for option in options:
        assert option in result.output, option


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"sarfuse {__version__}"


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sarfuse", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sarfuse {__version__}"


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage: sarfuse" in result.output
    assert "Traceback" not in result.output


# --- happy paths ----------------------------------------------------------------------------


def test_synth_writes_a_dataset(tmp_path: Path) -> None:
    result = invoke("synth", tmp_path / "scene", "--size", 128, "--seed", 3, "--layout", "scene")
    assert result.exit_code == 0, result.output
    for name in ("scene_s1.tif", "scene_s2.tif", "scene_label.tif", "samples.csv", "synth.json"):
        assert (tmp_path / "scene" / name).is_file(), name
    meta = json.loads((tmp_path / "scene" / "synth.json").read_text())
    assert (meta["size"], meta["seed"], meta["layout"]) == (128, 3, "scene")
    with rasterio.open(tmp_path / "scene" / "scene_s2.tif") as src:
        assert (src.count, src.width, src.height) == (13, 128, 128)
        assert src.crs is not None


def test_synth_rejects_an_unknown_layout(tmp_path: Path) -> None:
    assert_one_error(invoke("synth", tmp_path / "x", "--layout", "sen12ms"), "--layout")
    assert not (tmp_path / "x").exists()


def test_stats_writes_json(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    result = invoke("stats", data, "--out", out)
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text())
    assert set(stats["s1"]["mean"]) == {"VV", "VH"}
    assert len(stats["s2"]["mean"]) == 13
    assert stats["s1"]["count"] == 512 * 512
    assert -30 < stats["s1"]["mean"]["VV"] < 0 < stats["s1"]["std"]["VV"]
    assert 0 < stats["s2"]["mean"]["B2"] < 10000


def test_superpixels_are_cached(data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SARFUSE_CACHE", str(tmp_path / "cache"))
    args = ("superpixels", data, "--workers", 1, "--patch-size", 256)
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert "superpixels: 4 computed, 0 from cache" in first.stdout
    assert "superpixels: 0 computed, 4 from cache" in second.stdout


def test_pretrain_writes_a_run(pretrain_run: tuple[Path, Result]) -> None:
    run, result = pretrain_run
    assert result.exit_code == 0, (result.output, result.exception)
    assert "pretrained intermediate/pixel for 2 steps" in result.stdout
    assert f"checkpoint: {run / 'last.ckpt'}" in result.stdout
    config = json.loads((run / "config.json").read_text())
    assert (config["steps"], config["width"], config["feat_dim"]) == (2, 4, 8)
    assert (run / "last.ckpt").is_file() and (run / "loss.png").is_file()
    # Lightning's banners (GPU available..., tips) stay off the terminal: importing Lightning
    # resets its logger to INFO, so the command must set it after the import
    assert logging.getLogger("lightning.pytorch").level == logging.WARNING


def test_pretrain_refuses_to_overwrite_a_run(pretrain_run: tuple[Path, Result], small) -> None:
    run, _ = pretrain_run
    stamp = (run / "last.ckpt").stat().st_mtime_ns
    result = invoke("pretrain", small, "--out", run, *TINY_PRETRAIN)
    assert_one_error(result, "last.ckpt", "--resume")
    assert (run / "last.ckpt").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("option", "expected"),
    [((), "all but B10"), (("--s2-bands", "B2,B3,B4,B8"), ["B2", "B3", "B4", "B8"])],
)
def test_pretrain_s2_bands(small: Path, tmp_path: Path, option, expected):
    """By default the network sees every S2 band of the data but the cirrus band B10."""
    data = small
    result = invoke("pretrain", data, "--out", tmp_path / "run", *option, *TINY_PRETRAIN)
    assert result.exit_code == 0, (result.output, result.exception)
    bands = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["sarfuse"]["s2_bands"]
    if expected == "all but B10":
        expected = [b for b in discover(data).s2_bands() if b != "B10"]
        assert len(expected) == 12
    assert bands == expected


def test_pretrain_without_fusion_on_s2_only_data_uses_early_fusion(
    small: Path, tmp_path: Path
) -> None:
    """--fusion defaults to auto: S2-only data no longer stops at intermediate fusion."""
    data = small
    s2 = next(data.glob("s2_*/*.tif"))
    (tmp_path / "only_s2.csv").write_text(f"s1,s2\n,{s2}\n")
    result = invoke("pretrain", tmp_path / "only_s2.csv", "--out", tmp_path / "run", *TINY_PRETRAIN)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "pretrained early/pixel for 2 steps (fusion auto" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fusion"] == "early"
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert ckpt["sarfuse"]["fusion"] == ckpt["sarfuse"]["model"]["fusion"] == "early"


def test_pretrain_rejects_an_unknown_band(data: Path, tmp_path: Path) -> None:
    result = invoke("pretrain", data, "--out", tmp_path / "run", "--s2-bands", "B2,B99",
                    *TINY_PRETRAIN)  # fmt: skip
    assert_one_error(result, "B99")
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_probe_raw_writes_the_probe_folder(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    result = invoke("probe", data, "--features", "raw", "--out", out, *FAST_PROBE)
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.stdout
    assert "decision: most probable class" in result.stdout  # DFC2020 names no target class
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["features"] == "raw" and metrics["labelled_patches"] == 2
    for name in ("probe.pt", "split.json", "config.json", "confusion.png"):
        assert (out / name).is_file(), name


def test_probe_supervised_trains_its_own_network(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    result = invoke("probe", data, "--features", "supervised", "--supervised-steps", 2,
                    "--out", out, *FAST_PROBE)  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["features"] == "supervised" and metrics["checkpoint"] is None
    assert 0.0 <= metrics["miou_all"] <= metrics["mIoU"] <= 1.0
    s2 = data / S2_P2  # its network is not kept, so it cannot map: said in one line
    assert_one_error(invoke("map", "--probe", out, "--s2", s2, "--out", tmp_path / "m.tif"),
                     "supervised features")  # fmt: skip


def test_map_writes_a_geotiff(data: Path, pretrained_probe: Path, tmp_path: Path) -> None:
    out = tmp_path / ("a_long_folder_name_" * 5 + "[v2]") / "map.tif"  # printed as it is
    s1, s2 = data / "s1_0/ROIs0000_test_s1_0_p1.tif", data / "s2_0/ROIs0000_test_s2_0_p1.tif"
    args = ("--s1", s1, "--s2", s2, "--tile", 128, "--overlap", 16, "--device", "cpu")
    result = invoke("map", "--probe", pretrained_probe, "--out", out, *args)
    assert result.exit_code == 0, result.output
    tiles = len(tile_windows(256, 256, 128, 16))
    precision = resolve_precision("auto", "cpu")
    assert f"map: {out} ({tiles} tiles, network in {precision})" in result.stdout
    assert f"quicklook: {out.with_suffix('.png')}" in result.stdout
    with rasterio.open(out) as dst, rasterio.open(s2) as src:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert dst.dtypes[0] == "uint8"
    assert out.with_suffix(".png").is_file()
    saved = load_config(out.with_name("map.config.yaml"), MapConfig())  # beside the map
    assert saved == MapConfig(tile=128, overlap=16)


def test_export_writes_an_onnx_model(pretrained_probe: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = invoke(
        "export", "--probe", pretrained_probe, "--out", out, "--tile", 64, "--overlap", 8
    )
    assert result.exit_code == 0, result.output
    assert f"model: {out}" in result.stdout and "S1 VV, S1 VH, S2 B1" in result.stdout
    assert out.stat().st_size > 1000


def test_export_refuses_a_random_forest(data: Path, tmp_path: Path) -> None:
    cfg = ProbeConfig(labels=2, patch_size=128, features="raw", classifier="rf", self_train=False)
    run_probe(discover(data), tmp_path / "rf", cfg, None, progress=False)
    result = invoke("export", "--probe", tmp_path / "rf", "--out", tmp_path / "m.onnx")
    assert_one_error(result, "probe.pt", "random-forest probe cannot be exported")
    assert not (tmp_path / "m.onnx").exists()


# --- bad input ------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere [v2]"  # brackets are not rich markup in the message
    assert_one_error(invoke("stats", missing), str(missing), "no such file or folder")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_error(invoke("stats", tmp_path / "empty"), "empty", "empty folder")


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a dataset\n")
    assert_one_error(invoke("stats", tmp_path / "notes"), "notes", "unknown layout")


def test_missing_s2_partner(data: Path, tmp_path: Path) -> None:
    bad = mutated(data, tmp_path, lambda d: (d / S2_P2).unlink())
    line = assert_one_error(invoke("stats", bad), "missing S2 partner")
    assert "ROIs0000_test_s1_0_p2.tif" in line and "ROIs0000_test_s2_0_p2.tif" in line


def test_crs_mismatch(data: Path, tmp_path: Path) -> None:
    bad = mutated(data, tmp_path, lambda d: rewrite(d / S1_P2, crs="EPSG:32632"))
    line = assert_one_error(
        invoke("probe", bad, "--features", "raw", "--out", tmp_path / "p", *FAST_PROBE),
        "does not line up",
        "EPSG:32632",
    )
    assert S1_P2.split("/")[1] in line and S2_P2.split("/")[1] in line


def test_truncated_geotiff(data: Path, tmp_path: Path) -> None:
    def truncate(d: Path) -> None:
        raw = (d / S2_P2).read_bytes()
        (d / S2_P2).write_bytes(raw[: len(raw) // 3])

    bad = mutated(data, tmp_path, truncate)
    assert_one_error(invoke("stats", bad, "--out", tmp_path / "s.json"), S2_P2, "corrupt")
    assert not (tmp_path / "s.json").exists()


def test_not_a_raster(data: Path, tmp_path: Path) -> None:
    bad = mutated(data, tmp_path, lambda d: (d / S2_P2).write_text("hello, not a GeoTIFF\n"))
    assert_one_error(invoke("stats", bad, "--out", tmp_path / "s.json"), S2_P2, "not a raster")


def test_all_nan_s1(data: Path, tmp_path: Path) -> None:
    bad = mutated(data, tmp_path, lambda d: rewrite(d / S1_P2, lambda a: np.full_like(a, np.nan)))
    assert_one_error(invoke("stats", bad, "--out", tmp_path / "s.json"), S1_P2, "NaN")


def test_map_of_an_all_nan_scene(data: Path, pretrained_probe: Path, tmp_path: Path) -> None:
    """An all-NaN scene is refused by the data check, before any tile is mapped."""
    bad = mutated(data, tmp_path, lambda d: rewrite(d / S1_P2, lambda a: np.full_like(a, np.nan)))
    out = tmp_path / "map.tif"
    args = ("--s1", bad / S1_P2, "--s2", bad / S2_P2, "--tile", 128, "--overlap", 16)
    result = invoke("map", "--probe", pretrained_probe, "--out", out, *args, "--device", "cpu")
    assert_one_error(result, S1_P2, "no valid pixel")
    assert not out.exists()


def test_labels_outside_the_scheme(data: Path, tmp_path: Path) -> None:
    def poke(array: np.ndarray) -> np.ndarray:
        array[0, :4, :4] = 77
        return array

    bad = mutated(data, tmp_path, lambda d: rewrite(d / DFC_P2, poke))
    out = tmp_path / "probe"
    result = invoke("probe", bad, "--features", "raw", "--out", out, *FAST_PROBE)
    assert_one_error(result, DFC_P2, "outside", "77")
    assert not (out / "metrics.json").exists()


def test_probe_pretrained_needs_a_checkpoint(data: Path, tmp_path: Path) -> None:
    result = invoke("probe", data, "--features", "pretrained", "--out", tmp_path / "p")
    assert_one_error(result, "--checkpoint")


def test_probe_decision_is_checked_and_passed_on(data: Path, tmp_path: Path, monkeypatch) -> None:
    result = invoke("probe", data, "--decision", "f1", "--out", tmp_path / "p")
    assert_one_error(result, "--decision must be", "'f1'")
    assert not (tmp_path / "p").exists()
    assert ran_with(monkeypatch, "probe", data, "--decision", "argmax").decision == "argmax"


def test_checkpoint_not_found(data: Path, tmp_path: Path) -> None:
    missing = tmp_path / "run" / "last.ckpt"
    result = invoke("probe", data, "--checkpoint", missing, "--out", tmp_path / "p", *FAST_PROBE)
    assert_one_error(result, str(missing), "checkpoint not found")


def test_map_without_a_probe(data: Path, tmp_path: Path) -> None:
    result = invoke("map", "--probe", tmp_path / "noprobe", "--s2", data / S2_P2, "--out",
                    tmp_path / "m.tif")  # fmt: skip
    assert_one_error(result, "noprobe", "not found")


def test_experiment_rejects_bad_label_counts(tmp_path: Path) -> None:
    result = invoke("experiment", "--labels", "10,many", "--out", tmp_path / "exp")
    assert_one_error(result, "--labels", "integers", "many")
    assert not (tmp_path / "exp").exists()


def test_map_refuses_a_checkpoint_of_another_contract(
    data: Path, checkpoint: Path, pretrained_probe: Path, tmp_path: Path
) -> None:
    """A network trained with other normalisation statistics cannot feed this probe."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stats = copy.deepcopy(ckpt["sarfuse"]["stats"])
    stats["s1"]["mean"]["VV"] += 3.0
    ckpt["sarfuse"]["stats"] = stats
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    s1, s2 = data / S1_P2, data / S2_P2
    out = tmp_path / "map.tif"
    result = invoke(
        "map", "--probe", pretrained_probe, "--checkpoint", other, "--s1", s1, "--s2", s2,
        "--out", out, "--tile", 128, "--overlap", 16, "--device", "cpu",
    )  # fmt: skip
    assert_one_error(result, str(other), "does not match the probe")
    assert not out.exists()


def test_map_refuses_a_checkpoint_for_a_raw_probe(
    data: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """A raw-band probe uses no network: a --checkpoint would be silently ignored, so say so."""
    probe_dir = tmp_path / "probe"
    assert (
        invoke("probe", data, "--features", "raw", "--out", probe_dir, *FAST_PROBE).exit_code == 0
    )
    out = tmp_path / "map.tif"
    result = invoke(
        "map", "--probe", probe_dir, "--checkpoint", checkpoint, "--s1", data / S1_P2,
        "--s2", data / S2_P2, "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert_one_error(result, str(probe_dir / "probe.pt"), "raw bands", "drop --checkpoint")
    assert not out.exists()


# --- files from elsewhere -------------------------------------------------------------------
# Checkpoints and probe folders are shared; one crafted to run code when unpickled must be
# refused by every command that reads it, with the payload never run (see ``payload``).


@pytest.fixture
def crafted_checkpoint(checkpoint: Path, payload, tmp_path: Path) -> Path:
    """A real checkpoint with a pickled object added: loading it fully would run the payload."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["extra"] = payload
    path = tmp_path / "shared" / "last.ckpt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    return path


def assert_refused(result: Result, path: Path, payload, *fragments: str) -> None:
    assert_one_error(result, str(path), *fragments)
    assert not payload.marker.exists()


def test_probe_refuses_a_checkpoint_that_would_run_code(
    data: Path, crafted_checkpoint: Path, payload, tmp_path: Path
) -> None:
    result = invoke("probe", data, "--checkpoint", crafted_checkpoint, "--out", tmp_path / "p",
                    *FAST_PROBE)  # fmt: skip
    assert_refused(result, crafted_checkpoint, payload, "refused", "could run code")


def test_map_refuses_a_checkpoint_that_would_run_code(
    data: Path, pretrained_probe: Path, crafted_checkpoint: Path, payload, tmp_path: Path
) -> None:
    result = invoke(
        "map", "--probe", pretrained_probe, "--checkpoint", crafted_checkpoint, "--s1",
        data / S1_P2, "--s2", data / S2_P2, "--out", tmp_path / "map.tif", "--device", "cpu",
    )  # fmt: skip
    assert_refused(result, crafted_checkpoint, payload, "refused", "could run code")
    assert not (tmp_path / "map.tif").exists()


def test_map_refuses_a_pickled_random_forest(
    data: Path, pretrained_probe: Path, payload, tmp_path: Path
) -> None:
    """Older sarfuse versions pickled the forest into probe.pt; that file could carry anything."""
    probe_dir = tmp_path / "probe"
    shutil.copytree(pretrained_probe, probe_dir)
    record = torch.load(probe_dir / "probe.pt", weights_only=True)
    torch.save({**record, "kind": "rf", "state": pickle.dumps(payload)}, probe_dir / "probe.pt")
    result = invoke("map", "--probe", probe_dir, "--s1", data / S1_P2, "--s2", data / S2_P2,
                    "--out", tmp_path / "map.tif", "--device", "cpu")  # fmt: skip
    assert_refused(result, probe_dir / "probe.pt", payload, "older sarfuse", "retrain the probe")


def test_experiment_refuses_a_finished_pretraining_that_would_run_code(
    data: Path, crafted_checkpoint: Path, payload, tmp_path: Path
) -> None:
    """A finished pretraining is reused as it is: its checkpoint is read, not retrained."""
    exp = tmp_path / "exp"
    run = exp / "pretrain" / "early-pixel"
    run.mkdir(parents=True)
    shutil.copy(crafted_checkpoint, run / "last.ckpt")
    PretrainConfig(fusion="early", method="pixel", steps=2, device="cpu").to_json(
        run / "config.json"
    )
    (run / "done").write_text("ok\n")
    result = invoke("experiment", data, "--fusion", "early", "--methods", "pixel", "--labels", 1,
                    "--seeds", 0, "--steps", 2, "--patch-size", 128, "--device", "cpu",
                    "--out", exp)  # fmt: skip
    assert_refused(result, run / "last.ckpt", payload, "refused", "could run code")


def test_pretrain_refuses_to_resume_a_checkpoint_that_would_run_code(
    data: Path, pretrain_run: tuple[Path, Result], crafted_checkpoint: Path, payload
) -> None:
    run = crafted_checkpoint.parent
    shutil.copy(pretrain_run[0] / "config.json", run / "config.json")
    result = invoke("pretrain", data, "--out", run, "--resume", "--steps", 4, "--device", "cpu")
    assert_refused(result, crafted_checkpoint, payload, "cannot resume: refused")


@pytest.mark.slow
def test_demo_announces_files_that_exist(tmp_path: Path, monkeypatch) -> None:
    """The whole demo chain, with 5 pretraining steps, its data generated under tmp_path."""
    monkeypatch.delenv("SARFUSE_DEMO", raising=False)
    monkeypatch.setenv("SARFUSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo_out"
    result = invoke("demo", "--out", out, "--steps", 5, "--device", "cpu")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "cache" / "demo-dfc2020-1024-s0" / ".complete").is_file()
    summary = json.loads((out / "summary.json").read_text())
    announced = ("map", "quicklook", "metrics", "confusion", "loss_curve", "checkpoint")
    for key in announced:
        path = Path(summary[key])
        assert path.is_file() and path.stat().st_size > 0, key
        assert str(path) in result.stdout, key
    with rasterio.open(summary["map"]) as dst:
        assert dst.dtypes == ("uint8",) and dst.crs is not None
    assert 0.0 <= summary["mIoU"] <= 1.0


def test_experiment_passes_its_band_choice_on(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def fake_run(data, out, cfg, **kw):
        seen.update(bands=cfg.pretrain.s2_bands, labels=cfg.labels, seeds=cfg.seeds)
        (Path(out) / "summary.md").parent.mkdir(parents=True, exist_ok=True)
        (Path(out) / "summary.md").write_text("| table |\n")
        return []

    monkeypatch.setattr("sarfuse.experiment.run_experiment_config", fake_run)
    args = ("--labels", "10,50", "--seeds", "0", "--out", tmp_path / "exp")
    assert invoke("experiment", *args).exit_code == 0
    assert seen == {"bands": ("all",), "labels": (10, 50), "seeds": (0,)}
    assert invoke("experiment", *args, "--s2-bands", "B2,B3,B4,B8").exit_code == 0
    assert seen["bands"] == ("B2", "B3", "B4", "B8")


# --- defaults and config files ----------------------------------------------------------------

# the config each command fills; an experiment's ROUTES options fill its pretrain / probe part
CONFIGS = {"pretrain": PretrainConfig, "probe": ProbeConfig, "map": MapConfig,
           "experiment": ExperimentConfig}  # fmt: skip
# the command, what it calls with its config, and how to find the config in that call
CALLS = {
    "pretrain": ("sarfuse.ssl.train.pretrain", lambda a, kw: a[2]),
    "probe": ("sarfuse.mapping.workflow.run_probe", lambda a, kw: a[2]),
    "experiment": ("sarfuse.experiment.run_experiment_config", lambda a, kw: a[2]),
    "map": ("sarfuse.mapping.scene.map_files", lambda a, kw: kw["config"]),
}  # fmt: skip


class _Called(Exception):
    """Raised by a stand-in for the library: the command got as far as calling it."""


def ran_with(monkeypatch, name: str, *args: object) -> object:
    """The config ``sarfuse NAME ARGS`` hands the library (which is not run)."""
    target, pick = CALLS[name]
    seen = []

    def stand_in(*a, **kw):
        seen.append(pick(a, kw))
        raise _Called

    monkeypatch.setattr(target, stand_in)
    result = invoke(name, *args)
    assert seen, (result.output, result.exception)
    return seen[0]


def field_of(name: str, option: str) -> tuple[type, str] | None:
    """The dataclass and field a command's option sets, if any (the test's own mapping)."""
    cls = CONFIGS[name]
    part = ROUTES.get(option) if name == "experiment" else None
    if part is not None:
        cls = type(getattr(ExperimentConfig(), part))
    names = {f.name for f in fields(cls)}
    return (cls, option) if option in names else None


def as_typed(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_help_shows_the_defaults_of_the_dataclass(name: str) -> None:
    """Every option that sets a config field defaults to None (so that a --config file is not
    overridden by it) and its help shows the field's default, read from the dataclass."""
    mapped = 0
    for param in COMMANDS[name].params:
        found = field_of(name, param.name)
        if found is None or param.name == "device":  # --device: auto, resolved at run time
            continue
        mapped += 1
        default = field_default(*found)
        if name == "experiment" and param.name == "steps":
            default = ExperimentConfig().pretrain.steps
        assert param.default is None, param.name
        note = "" if default is None else f"[default: {as_typed(default)}]"
        assert param.help.replace("\\", "").endswith(note), (param.name, param.help, note)
    assert mapped >= {"pretrain": 20, "probe": 15, "map": 5, "experiment": 10}[name]
    wide = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "300"})
    assert f"base width (paper: 64). [default: {PretrainConfig().width}]" in wide.output


def test_no_options_run_the_dataclass_defaults(data: Path, tmp_path: Path, monkeypatch) -> None:
    here = torch_device("auto")  # --device auto: what this machine resolves it to
    cfg = ran_with(monkeypatch, "pretrain", data, "--out", tmp_path / "run")
    assert cfg == PretrainConfig()
    cfg = ran_with(monkeypatch, "probe", data, "--out", tmp_path / "probe")
    assert cfg == replace(ProbeConfig(), device=here)
    cfg = ran_with(monkeypatch, "map", "--probe", tmp_path, "--out", tmp_path / "m.tif")
    assert cfg == MapConfig()
    cfg = ran_with(monkeypatch, "experiment", data, "--out", tmp_path / "exp")
    assert cfg == replace(ExperimentConfig(), probe=replace(ProbeConfig(), device=here))


def test_options_win_over_the_config_file(data: Path, tmp_path: Path, monkeypatch) -> None:
    """dataclass default < --config file < option given on the command line."""
    file = tmp_path / "c.yaml"
    file.write_text("width: 8\nseed: 5\ns2_bands: [B2, B3]\n")
    cfg = ran_with(monkeypatch, "pretrain", data, "--config", file, "--width", 4)
    assert (cfg.width, cfg.seed, cfg.s2_bands) == (4, 5, ("B2", "B3"))
    assert cfg.feat_dim == PretrainConfig().feat_dim
    file.write_text("labels: 3\nsplit_mode: blocks\n")
    cfg = ran_with(monkeypatch, "probe", data, "--config", file, "--split-mode", "random")
    assert (cfg.labels, cfg.split_mode) == (3, "random")
    file.write_text("seeds: [4]\npretrain:\n  steps: 7\n  width: 8\nprobe:\n  labels: 2\n")
    cfg = ran_with(monkeypatch, "experiment", data, "--config", file, "--steps", 9)
    assert (cfg.seeds, cfg.pretrain.steps, cfg.pretrain.width, cfg.probe.labels) == ((4,), 9, 8, 2)


def test_a_bad_config_file_is_one_line(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("widht: 8\n")
    assert_one_error(invoke("pretrain", data, "--config", bad), str(bad), "unknown key 'widht'")
    bad.write_text("tile: big\n")
    out = tmp_path / "m.tif"
    assert_one_error(invoke("map", "--probe", tmp_path, "--out", out, "--config", bad),
                     str(bad), "tile: expected int")  # fmt: skip
    bad.write_text("features: everything\n")
    assert_one_error(invoke("probe", data, "--config", bad), str(bad), "features")


def test_a_probe_reruns_from_its_saved_config(data: Path, tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    result = invoke("probe", data, "--features", "raw", "--seed", 3, "--out", first, *FAST_PROBE)
    assert result.exit_code == 0, result.output
    result = invoke("probe", data, "--config", first / "config.json", "--out", again)
    assert result.exit_code == 0, result.output
    saved = json.loads((first / "config.json").read_text())
    assert saved["seed"] == 3 and saved["labels"] == 2
    assert json.loads((again / "config.json").read_text()) == saved
    metrics = [json.loads((d / "metrics.json").read_text())["mIoU"] for d in (first, again)]
    assert metrics[0] == metrics[1]


def test_a_pretraining_reruns_from_its_config_json(
    pretrain_run: tuple[Path, Result], small: Path, tmp_path: Path, monkeypatch
) -> None:
    run, _ = pretrain_run
    cfg = ran_with(monkeypatch, "pretrain", small, "--config", run / "config.json",
                   "--out", tmp_path / "again")  # fmt: skip
    saved = json.loads((run / "config.json").read_text())
    assert json.loads(json.dumps(asdict(cfg))) == saved
    assert (cfg.width, cfg.steps) == (4, 2)
