"""An infinite value stops every command at the window that reads it, even where the data check
up front, which samples 16 small windows of a file, does not look."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from typer.testing import CliRunner, Result

from sarfuse.cli import app
from sarfuse.data.layouts import discover
from sarfuse.data.raster import _probe_windows, read_s1, read_s2
from sarfuse.data.synth import generate
from sarfuse.data.validate import validate_source
from sarfuse.errors import SarfuseError
from sarfuse.mapping.workflow import ProbeConfig, run_probe

SIZE = 320  # 16 windows of 64 at rows/cols 0, 85, 170, 256: rows 234..255 are never sampled
INF_AT = (240, 40)  # (row, col) of the infinite pixel, outside every sampled window
TINY_PRETRAIN = (
    "--steps", 2, "--crop", 16, "--batch", 4, "--width", 4, "--feat-dim", 8, "--patch-size", 64,
    "--device", "cpu",
)  # fmt: skip


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="sarfuse")


def error_line(result: Result) -> str:
    """The command failed with exit 2, no traceback, and its one error line is stderr's last."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [x.strip() for x in re.split(r"[\r\n]", result.stderr) if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    return errors[0]


def _poison(path: Path, band: int = 1) -> None:
    with rasterio.open(path, "r+") as dst:
        data = dst.read(band, window=Window(INF_AT[1], INF_AT[0], 1, 1)).astype("float32")
        data[:] = np.inf
        dst.write(data, band, window=Window(INF_AT[1], INF_AT[0], 1, 1))


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> Path:
    """A synthetic scene whose S1 file holds one infinite pixel where no check samples."""
    scene = generate(tmp_path_factory.mktemp("inf") / "scene", size=SIZE, seed=5, layout="scene")
    _poison(scene / "scene_s1.tif")
    return scene


def test_the_pixel_lies_outside_the_sampled_windows(poisoned: Path) -> None:
    row, col = INF_AT
    for w in _probe_windows(SIZE, SIZE):
        assert not (
            w.row_off <= row < w.row_off + w.height and w.col_off <= col < w.col_off + w.width
        )
    validate_source(discover(poisoned), labels=False, progress=False)  # passes: not sampled


def test_readers_name_the_file_and_the_pixel(poisoned: Path, tmp_path: Path) -> None:
    with pytest.raises(
        SarfuseError, match=r"scene_s1.tif: holds an infinite value at row 240, col 40"
    ):
        read_s1(poisoned / "scene_s1.tif", Window(0, 200, 128, 64))
    read_s1(poisoned / "scene_s1.tif", Window(64, 200, 64, 64))  # a window beside it reads
    s2 = tmp_path / "s2.tif"
    with rasterio.open(poisoned / "scene_s2.tif") as src:
        profile, data = src.profile | {"dtype": "float32"}, src.read(out_dtype="float32")
    data[3, 10, 300] = -np.inf
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(SarfuseError, match="s2.tif: holds an infinite value at row 10, col 300"):
        read_s2(s2)


def test_stats_stops_at_the_window(poisoned: Path, tmp_path: Path) -> None:
    line = error_line(invoke("stats", poisoned, "--out", tmp_path / "stats.json"))
    assert "scene_s1.tif: holds an infinite value at row 240, col 40" in line
    assert not (tmp_path / "stats.json").exists()


def test_pretrain_stops_at_the_window(poisoned: Path, tmp_path: Path) -> None:
    line = error_line(invoke("pretrain", poisoned, "--out", tmp_path / "run", *TINY_PRETRAIN))
    assert "scene_s1.tif: holds an infinite value at row 240, col 40" in line


def test_map_stops_and_keeps_its_finished_rows(poisoned: Path, tmp_path: Path) -> None:
    """The first tile row is finished and kept before the infinite pixel is read; a rerun of the
    same job replays the kept rows (their files untouched) and stops at the same pixel."""
    probe = tmp_path / "probe"
    clean = generate(tmp_path / "clean", size=128, seed=5, layout="scene")
    fast = dict(labels=2, patch_size=64, epochs=1, features="raw", classifier="linear")
    run_probe(discover(clean), probe, ProbeConfig(**fast), progress=False)
    out = tmp_path / "map.tif"
    out.write_bytes(b"earlier map")
    args = ("map", "--probe", probe, "--out", out, "--s1", poisoned / "scene_s1.tif",
            "--s2", poisoned / "scene_s2.tif", "--tile", 64, "--overlap", 8)  # fmt: skip
    assert "scene_s1.tif: holds an infinite value at row 240" in error_line(invoke(*args))
    partial = out.with_name("map.tif.partial")
    kept = sorted(partial.glob("band_*.npz"))
    assert kept and (partial / "job.json").is_file()
    stamps = [(p.name, p.stat().st_mtime_ns) for p in kept]
    for path in kept:
        with np.load(path) as band:
            assert all(band[k].shape[0] > 0 for k in band.files)
    assert "row 240" in error_line(invoke(*args))
    assert [(p.name, p.stat().st_mtime_ns) for p in sorted(partial.glob("band_*.npz"))] == stamps
    assert out.read_bytes() == b"earlier map"
