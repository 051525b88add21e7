"""Reliability: bad input stops at the data check with one line naming the file, outputs are
locked, written atomically with the umask's permissions, and map jobs never splice."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.main import get_command
from typer.testing import CliRunner, Result

from sarfuse.cli import app
from sarfuse.data.layouts import discover
from sarfuse.data.raster import RasterInfo, detect_s1_units, write_geotiff
from sarfuse.data.schemes import load_scheme
from sarfuse.data.synth import generate
from sarfuse.data.validate import validate_source
from sarfuse.errors import SarfuseError, SarfuseWarning
from sarfuse.io_utils import atomic_write_text
from sarfuse.lock import lock_path, output_lock
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.workflow import ProbeConfig, run_probe

SRC = Path(__file__).resolve().parents[1] / "src"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar
FAST_PROBE = dict(labels=2, patch_size=64, epochs=1, features="raw", classifier="linear")


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="sarfuse")


def one_line(result: Result, code: int = 2) -> str:
    """The command failed with ``code``, no traceback, and stderr's last line is its message."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [x.strip() for x in re.split(r"[\r\n]", ANSI.sub("", result.stderr)) if x.strip()]
    problems = [x for x in lines if x.startswith(("error:", "internal error:", "interrupted:"))]
    assert len(problems) == 1 and problems[0] == lines[-1], result.stderr
    return problems[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 128 x 128 synthetic S1 + S2 + label scene with its samples.csv."""
    return generate(tmp_path_factory.mktemp("rel") / "scene", size=128, seed=3, layout="scene")


@pytest.fixture(scope="module")
def probe_dir(scene: Path, tmp_path_factory) -> Path:
    """A raw-band linear probe of ``scene`` (no network needed)."""
    out = tmp_path_factory.mktemp("rel-probe")
    run_probe(discover(scene), out, ProbeConfig(**FAST_PROBE), progress=False)
    return out


def _rows(scene: Path) -> list[dict]:
    with (scene / "samples.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict], bom: bool = False) -> Path:
    text = "s1,s2,label\n" + "".join(f"{r['s1']},{r['s2']},{r['label']}\n" for r in rows)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


# --- one data check ----------------------------------------------------------------------------


def test_stats_refuses_partners_on_other_grids(scene: Path, tmp_path: Path) -> None:
    """The held-out case: stats checks S1/S2 alignment as pretrain does."""
    with rasterio.open(scene / "scene_s1.tif") as src:
        data, profile = src.read(), src.profile
    profile.update(crs="EPSG:32634")
    with rasterio.open(tmp_path / "s1.tif", "w", **profile) as dst:
        dst.write(data)
    rows = [{"s1": str(tmp_path / "s1.tif"), "s2": str(scene / "scene_s2.tif"), "label": ""}]
    line = one_line(invoke("stats", _write_csv(tmp_path / "s.csv", rows), "--out", tmp_path / "x"))
    assert "does not line up" in line and "CRS" in line and "--reproject" not in line


def test_utf8_bom_keeps_the_first_column(scene: Path, tmp_path: Path) -> None:
    rows = [{k: str(scene / v) for k, v in r.items()} for r in _rows(scene)]
    source = discover(_write_csv(tmp_path / "s.csv", rows, bom=True))
    assert source.sensors == ("s1", "s2") and source.has_labels


def test_duplicate_rows_are_dropped_with_a_warning(scene: Path, tmp_path: Path) -> None:
    rows = [{k: str(scene / v) for k, v in r.items()} for r in _rows(scene)] * 100_000
    with pytest.warns(SarfuseWarning, match="99999 duplicate row"):
        source = discover(_write_csv(tmp_path / "s.csv", rows))
    assert len(source.samples) == 1


def test_pretraining_data_may_hold_any_labels(scene: Path, tmp_path: Path) -> None:
    """Sen1Floods11-style labels (-1/0/1) under generic names: stats ignores them; probe
    reads them with the DFC2020 default and refuses them, naming the file."""
    label = tmp_path / "lab.tif"
    with rasterio.open(scene / "scene_label.tif") as src:
        profile = src.profile | {"dtype": "int16", "nodata": None}
        values = src.read().astype("int16") % 3 - 1
    with rasterio.open(label, "w", **profile) as dst:
        dst.write(values)
    rows = [{"s1": scene / "scene_s1.tif", "s2": scene / "scene_s2.tif", "label": label}]
    index = _write_csv(tmp_path / "s.csv", rows)
    assert invoke("stats", index, "--out", tmp_path / "stats.json").exit_code == 0
    line = one_line(invoke("probe", index, "--features", "raw", "--out", tmp_path / "p"))
    assert str(label) in line and "outside the dfc2020 scheme" in line


def test_sen1floods11_label_names_imply_its_scheme(scene: Path, tmp_path: Path) -> None:
    for name in ("x_S1Hand.tif", "x_S2Hand.tif", "x_LabelHand.tif"):
        (tmp_path / name).write_bytes(b"")  # discovery only lists files; nothing is read
    rows = [{"s1": "x_S1Hand.tif", "s2": "x_S2Hand.tif", "label": "x_LabelHand.tif"}]
    assert discover(_write_csv(tmp_path / "s.csv", rows)).scheme.name == "sen1floods11"


def test_a_non_raster_in_the_index_is_refused_by_name(scene: Path, tmp_path: Path) -> None:
    secret = tmp_path / "id_key"
    secret.write_text("TOP-SECRET-KEY-MATERIAL\n")
    rows = [{"s1": "id_key", "s2": str(scene / "scene_s2.tif"), "label": ""}]
    result = invoke("stats", _write_csv(tmp_path / "s.csv", rows), "--out", tmp_path / "x")
    line = one_line(result)
    assert str(secret) in line and "s.csv line 2" in line and "not a raster" in line
    assert "TOP-SECRET" not in result.output


def test_linear_s1_with_a_few_negative_noise_values_is_linear(tmp_path: Path) -> None:
    power = np.random.default_rng(0).gamma(2.0, 0.05, (2, 64, 64)).astype("float32")
    power[:, ::16, ::16] = -1e-4  # thermal-noise removal leaves a few small negatives
    write_geotiff(tmp_path / "lin.tif", power, RasterInfo.make(64, 64), band_names=["VV", "VH"])
    assert detect_s1_units(tmp_path / "lin.tif") == "linear"
    db = 10 * np.log10(np.abs(power) + 1e-3)
    write_geotiff(tmp_path / "db.tif", db, RasterInfo.make(64, 64), band_names=["VV", "VH"])
    assert detect_s1_units(tmp_path / "db.tif") == "db"


def test_infinite_values_are_refused(scene: Path, tmp_path: Path) -> None:
    with rasterio.open(scene / "scene_s1.tif") as src:
        data, profile = src.read(), src.profile
    data[0, 5, 5] = np.inf
    with rasterio.open(tmp_path / "s1.tif", "w", **profile) as dst:
        dst.write(data)
    line = one_line(invoke("stats", tmp_path / "s1.tif", "--out", tmp_path / "x"))
    assert str(tmp_path / "s1.tif") in line and "infinite" in line


def test_a_scene_without_crs_warns(scene: Path, tmp_path: Path) -> None:
    with rasterio.open(scene / "scene_s1.tif") as src:
        data, profile = src.read(), src.profile
    del profile["crs"]
    with rasterio.open(tmp_path / "s1.tif", "w", **profile) as dst:
        dst.write(data)
    with pytest.warns(SarfuseWarning, match="no CRS"):
        validate_source(discover(tmp_path / "s1.tif"), labels=False)


# --- class schemes -----------------------------------------------------------------------------


def _scheme(tmp_path: Path, classes: list[dict], ignore=255) -> Path:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"ignore": ignore, "classes": classes}))
    return path


@pytest.mark.parametrize(
    ("classes", "ignore", "problem"),
    [
        ([{"value": 1, "name": "a", "color": "#000000"}] * 2, 255, "value 1 used twice"),
        (
            [{"value": v, "name": "a", "color": "#000000"} for v in (1, 2)],
            255,
            "name 'a' used twice",
        ),
        ([{"value": 1, "name": "a", "color": "red"}], 255, "is not #rrggbb"),
        ([{"value": 1, "name": "a"}], 255, "has no color"),
        ([{"value": 1, "name": "a", "color": "#000000"}], 1, "value 1 is both a class"),
        (
            [{"value": i, "name": str(i), "color": "#000000"} for i in range(300)],
            -1,
            "300 classes; need 1 to 254",
        ),
    ],
)  # fmt: skip
def test_bad_class_schemes_are_one_line(tmp_path: Path, classes, ignore, problem) -> None:
    path = _scheme(tmp_path, classes, ignore)
    with pytest.raises(SarfuseError) as err:
        load_scheme(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    assert "\n" not in str(err.value)


# --- messages ----------------------------------------------------------------------------------


def _accepted_flags() -> set[str]:
    flags = set()
    for command in [get_command(app), *get_command(app).commands.values()]:
        for param in command.params:
            flags.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return flags


def test_every_flag_an_error_suggests_exists() -> None:
    """Every ``--flag`` quoted in a SarfuseError message of the package is a real option."""
    hints = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for call in re.finditer(r"(?:SarfuseError|Interrupted)\((?:[^()]|\([^()]*\))*\)", text):
            hints.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", call.group(0)))
    assert hints, "no hint found: the pattern no longer matches the code"
    missing = sorted(hints - _accepted_flags())
    assert not missing, f"messages suggest options no command accepts: {missing}"


def test_map_tile_zero_is_a_tile_problem(scene: Path, probe_dir: Path, tmp_path: Path) -> None:
    args = ("--s1", scene / "scene_s1.tif", "--s2", scene / "scene_s2.tif", "--tile", 0)
    line = one_line(invoke("map", "--probe", probe_dir, "--out", tmp_path / "m.tif", *args))
    assert "--tile" in line and "patch size" not in line


def test_pretrain_batch_zero(scene: Path, tmp_path: Path) -> None:
    line = one_line(invoke("pretrain", scene, "--out", tmp_path / "run", "--batch", 0))
    assert "--batch 0" in line
    assert not (tmp_path / "run").exists()


def _crop(path: Path, out: Path, size: int) -> Path:
    """The top-left ``size`` x ``size`` pixels of a GeoTIFF, as a new GeoTIFF."""
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        data = src.read(window=Window(0, 0, size, size))
        profile = src.profile | {"width": size, "height": size, "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        names = src.descriptions
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
    return out


def test_pretrain_of_a_tiny_scene_is_refused(scene: Path, tmp_path: Path) -> None:
    s1 = _crop(scene / "scene_s1.tif", tmp_path / "s1.tif", 10)
    rows = [{"s1": s1, "s2": _crop(scene / "scene_s2.tif", tmp_path / "s2.tif", 10), "label": ""}]
    index = _write_csv(tmp_path / "s.csv", rows)
    line = one_line(invoke("pretrain", index, "--out", tmp_path / "run", "--steps", 1))
    assert "smaller than a training view" in line and "10x10" in line


def test_too_few_labelled_patches_names_the_data(scene: Path, tmp_path: Path) -> None:
    result = invoke("probe", scene, "--features", "raw", "--labels", 50, "--out", tmp_path / "p")
    line = one_line(result)
    assert str(scene) in line and "only" in line and "available" in line


def test_checkpoint_without_model_is_one_line(scene: Path, tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "odd.ckpt"
    torch.save({"sarfuse": {"sensors": ["s1", "s2"]}, "state_dict": {}}, ckpt)
    result = invoke("probe", scene, "--features", "pretrained", "--checkpoint", ckpt,
                    "--out", tmp_path / "p")  # fmt: skip
    assert one_line(result).startswith(f"error: {ckpt}: incomplete sarfuse checkpoint: no model")


def test_unexpected_errors_are_one_line_and_debug_shows_them(monkeypatch, tmp_path) -> None:
    import sarfuse.data.synth as synth

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(synth, "generate", broken)
    line = one_line(invoke("synth", tmp_path / "d"), code=1)
    assert "ZeroDivisionError: boom" in line and "--debug" in line
    result = invoke("--debug", "synth", tmp_path / "d")
    assert isinstance(result.exception, ZeroDivisionError)


# --- writing outputs ---------------------------------------------------------------------------


def test_atomic_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        mode = stat.S_IMODE(atomic_write_text(tmp_path / "a.txt", "x").stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o644


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(scene: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line(invoke("stats", scene, "--out", folder / "stats.json"))
    finally:
        folder.chmod(0o755)
    assert "stats.json" in line and "cannot write" in line


def test_output_under_a_file_is_one_line(scene: Path, tmp_path: Path) -> None:
    """A parent that cannot be created (it is a file): refused in one line naming the path."""
    (tmp_path / "file").write_text("x")
    line = one_line(invoke("stats", scene, "--out", tmp_path / "file" / "stats.json"))
    assert "stats.json" in line and "cannot write" in line


@pytest.mark.parametrize("limit", [20_000, 200_000, 400_000])
def test_full_disk_keeps_the_earlier_map(
    scene: Path, probe_dir: Path, tmp_path: Path, limit: int
) -> None:
    """A file-size limit (as a full disk) while writing the map: one line naming the file,
    nothing from GDAL or libtiff besides it, the old map kept. The limits hit a resume file
    (20 kB) and the probabilities GeoTIFF, whose blocks GDAL writes when the file closes."""
    out = tmp_path / "map.tif"
    out.write_bytes(b"earlier map")
    code = (
        "import resource, signal, sys; from sarfuse.cli import app; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['sarfuse'] + sys.argv[1:]; app()"
    )
    scene_args = ["--s1", scene / "scene_s1.tif", "--s2", scene / "scene_s2.tif"]
    args = ["map", "--probe", probe_dir, "--out", out, *scene_args, "--probabilities",
            "--tile", 64, "--overlap", 8]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = [x.strip() for x in re.split(r"[\r\n]", proc.stderr)]
    lines = [x for x in lines if x and not PROGRESS.search(x) and "S1 read as dB" not in x]
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path}"), proc.stderr
    assert "cannot write" in lines[0]
    assert out.read_bytes() == b"earlier map"


# --- locks and map jobs ------------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_is_refused(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(tmp_path / "run", folder=True).parent.mkdir()
        lock_path(tmp_path / "run", folder=True).write_text(json.dumps({"pid": child.pid}))
        with pytest.raises(SarfuseError, match=f"another sarfuse run \\(pid {child.pid}\\)"):
            with output_lock(tmp_path / "run"):
                pass
    finally:
        child.kill()
        child.wait()
    with output_lock(tmp_path / "run") as lock:  # its owner is gone: the stale lock is taken
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_concurrent_map_is_refused(scene: Path, probe_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    with output_lock(out, folder=False):
        lock = lock_path(out, folder=False)
        lock.write_text(json.dumps({"pid": os.getppid()}))  # a live process that is not us
        args = ("--s1", scene / "scene_s1.tif", "--s2", scene / "scene_s2.tif")
        line = one_line(invoke("map", "--probe", probe_dir, "--out", out, *args))
        assert "another sarfuse run" in line
        lock.write_text(json.dumps({"pid": os.getpid()}))
    assert not out.exists()


def test_map_rerun_with_another_probe_starts_over(
    scene: Path, probe_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Rows kept by an interrupted job are never spliced into a job with another probe."""
    other = tmp_path / "probe2"
    run_probe(discover(scene), other, ProbeConfig(**FAST_PROBE | {"seed": 7}), progress=False)
    kw = dict(s1=scene / "scene_s1.tif", s2=scene / "scene_s2.tif", config=MapConfig(32, 8),
              progress=False, quicklook=False)  # fmt: skip
    reference = tmp_path / "ref.tif"
    map_files(other, reference, **kw)

    import sarfuse.mapping.scene as scene_mod

    real = scene_mod.map_scene
    calls = {"n": 0}

    def interrupted_after_two_bands(predict_fn, *args, **kwargs):
        many = kwargs.get("predict_many")

        def count(tiles: int) -> None:
            calls["n"] += tiles
            if calls["n"] > 12:
                raise KeyboardInterrupt

        def predict(inputs):
            count(1)
            return predict_fn(inputs)

        if many is not None:  # several tiles per call (the default)

            def predict_many(tiles):
                count(len(tiles))
                return many(tiles)

            kwargs["predict_many"] = predict_many
        return real(predict, *args, **kwargs)

    out = tmp_path / "map.tif"
    monkeypatch.setattr(scene_mod, "map_scene", interrupted_after_two_bands)
    with pytest.raises(SarfuseError, match="finished band"):
        map_files(probe_dir, out, **kw)
    assert list((tmp_path / "map.tif.partial").glob("band_*.npz")) and not out.exists()
    monkeypatch.setattr(scene_mod, "map_scene", real)
    result = map_files(other, out, **kw)
    assert result["resumed_at_row"] == 0
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        assert (a.read() == b.read()).all()


def test_an_s2_stack_in_reversed_band_order_warns(scene: Path, tmp_path: Path) -> None:
    with rasterio.open(scene / "scene_s2.tif") as src:
        data, profile = src.read(), src.profile
    with rasterio.open(tmp_path / "s2.tif", "w", **profile) as dst:  # no band descriptions
        dst.write(data[::-1])
    with pytest.warns(SarfuseWarning, match="look out of order"):
        validate_source(discover(tmp_path / "s2.tif"), labels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SarfuseWarning)  # the pristine stack: no warning
        validate_source(discover(scene / "scene_s2.tif"), labels=False)


def test_no_labelled_patch_names_the_label_file(scene: Path, tmp_path: Path) -> None:
    label = tmp_path / "lab.tif"
    with rasterio.open(scene / "scene_label.tif") as src:
        profile = src.profile
    with rasterio.open(label, "w", **profile) as dst:
        dst.write(np.full((1, 128, 128), 255, profile["dtype"]))  # all ignored
    rows = [{"s1": scene / "scene_s1.tif", "s2": scene / "scene_s2.tif", "label": label}]
    result = invoke("probe", _write_csv(tmp_path / "s.csv", rows), "--features", "raw",
                    "--out", tmp_path / "p")  # fmt: skip
    assert (
        one_line(result)
        == f"error: {label}: no patch has a labelled pixel (every label is nodata or ignored)"
    )


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"])
def test_a_secondary_rank_writes_under_rank_zeros_lock(
    tmp_path: Path, monkeypatch, variable: str
) -> None:
    """Rank 0 holds the run folder's lock; the ranks Lightning or torchrun start beside it must
    not be refused by it (they run the same command in the same folder)."""
    from sarfuse.lock import output_lock

    with output_lock(tmp_path / "run") as lock:
        lock.write_text(json.dumps({"pid": os.getppid()}))  # rank 0: a live process, not us
        monkeypatch.setenv(variable, "1")
        with output_lock(tmp_path / "run"):
            pass
        monkeypatch.setenv(variable, "0")
        with pytest.raises(SarfuseError, match="another sarfuse run"):
            with output_lock(tmp_path / "run"):
                pass
