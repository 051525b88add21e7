"""Real runs killed (SIGKILL) or interrupted (SIGINT) at random moments, then resumed: nothing
is lost beyond the last checkpoint, and the result equals an uninterrupted run's bit for bit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.mapping.workflow import ProbeConfig, run_probe

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--steps", "24", "--ckpt-every", "2", "--crop", "16", "--batch", "4", "--width", "4",
        "--feat-dim", "8", "--patch-size", "64", "--device", "cpu"]  # fmt: skip


def sarfuse(args: list, cache: Path) -> subprocess.Popen:
    """Start ``python -m sarfuse ARGS`` (one torch thread, so CPU results are reproducible)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "SARFUSE_CACHE": str(cache),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "sarfuse", *map(str, args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def logged_steps(run: Path) -> int:
    """The last step in loss.csv (0 when there is none)."""
    path = run / "loss.csv"
    lines = path.read_text().splitlines()[1:] if path.exists() else []
    steps = [int(x.split(",")[0]) for x in lines if x.split(",")[0].isdigit()]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("kill") / "data", size=128, seed=5, layout="scene")


def test_pretraining_killed_again_and_again_ends_as_an_uninterrupted_run(
    data: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    code, err = finish(sarfuse(["pretrain", data, "--out", tmp_path / "ref", *TINY], cache))
    assert code == 0, err
    rng = random.Random(11)
    run, resumes = tmp_path / "run", 0
    for target in sorted(rng.sample(range(1, 23), 4)):  # kill after a random step, + 0-50 ms
        resume = ["--resume"] if (run / "last.ckpt").exists() else []
        resumes += bool(resume)
        proc = sarfuse(["pretrain", data, "--out", run, *TINY, *resume], cache)
        while logged_steps(run) < target and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
        ckpt = run / "last.ckpt"
        saved = torch.load(ckpt, weights_only=True)["global_step"] if ckpt.exists() else 0
        assert logged_steps(run) - saved <= 2  # at most ckpt_every steps lost
    code, err = finish(sarfuse(["pretrain", data, "--out", run, *TINY, "--resume"], cache))
    assert code == 0, err
    assert resumes >= 3
    ref, got = weights(tmp_path / "ref" / "last.ckpt"), weights(run / "last.ckpt")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert logged_steps(run) == 24


def test_ctrl_c_during_pretraining_says_how_to_resume(data: Path, tmp_path: Path) -> None:
    cache, run = tmp_path / "cache", tmp_path / "run"
    proc = sarfuse(["pretrain", data, "--out", run, *TINY[:1], "400", *TINY[2:]], cache)
    while logged_steps(run) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 130 and "Traceback" not in err, err
    assert lines[-1].startswith("interrupted: ") and "--resume" in lines[-1], err
    assert not (run / ".sarfuse.lock").exists()


def test_map_killed_mid_scene_resumes_to_the_same_geotiff(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", size=512, seed=2, layout="scene")
    probe = tmp_path / "probe"
    cfg = ProbeConfig(labels=2, patch_size=64, epochs=1, features="raw", classifier="linear")
    run_probe(discover(data), probe, cfg, progress=False)
    args = ["--probe", probe, "--s1", data / "scene_s1.tif", "--s2", data / "scene_s2.tif",
            "--tile", "64", "--overlap", "8", "--device", "cpu"]  # fmt: skip
    code, err = finish(sarfuse(["map", "--out", tmp_path / "ref.tif", *args], tmp_path))
    assert code == 0, err
    out = tmp_path / "map.tif"
    partial = tmp_path / "map.tif.partial"
    proc = sarfuse(["map", "--out", out, *args], tmp_path)
    while len(list(partial.glob("band_*.npz"))) < 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the map finished before it could be killed"
    assert not out.exists()  # nothing half-written under the final name
    kept = len(list(partial.glob("band_*.npz")))
    code, err = finish(sarfuse(["map", "--out", out, *args], tmp_path))
    assert code == 0 and kept >= 2, err
    with rasterio.open(out) as a, rasterio.open(tmp_path / "ref.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
    assert not partial.exists()
