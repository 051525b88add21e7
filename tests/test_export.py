"""ONNX export: onnxruntime on the exported graph gives sarfuse's own probabilities on a tile
(read, normalised and featurised by the mapping code), with Deepness's metadata; probes that
cannot be exported are refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from rasterio.windows import Window

from sarfuse.data.layouts import discover
from sarfuse.data.raster import read_s1, read_s2
from sarfuse.errors import SarfuseError
from sarfuse.export import export_onnx
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.probe import predict_proba
from sarfuse.mapping.scene import load_mapper
from sarfuse.mapping.workflow import ProbeConfig, open_patches, run_probe
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

TILE = 64
TILING = MapConfig(TILE, 16)
WINDOW = Window(40, 24, TILE, TILE)  # (col, row, w, h): not on the patch grid
PROBE = ProbeConfig(
    labels=3, patch_size=64, epochs=3, classifier="linear", self_train=False, device="cpu"
)


@pytest.fixture(scope="module")
def scene(synthetic) -> Path:
    return synthetic(size=128, seed=0, layout="scene")


@pytest.fixture(scope="module")
def checkpoint(scene: Path, tmp_path_factory) -> Path:
    tiny = PretrainConfig(
        crop=16, batch=4, width=4, feat_dim=8, steps=3, patch_size=64, device="cpu"
    )
    return pretrain(scene, tmp_path_factory.mktemp("run"), tiny, progress=False).checkpoint


def _probe(scene: Path, out: Path, ckpt: Path | None, **changes) -> Path:
    run_probe(discover(scene), out, replace(PROBE, **changes), ckpt, progress=False)
    return out


def _sarfuse_proba(probe: Path, scene: Path) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, h, w) and valid mask of WINDOW as ``sarfuse map`` computes them."""
    clf, meta, maker = load_mapper(probe, None)
    source = discover(scene)
    reader = open_patches(source, meta["contract"], replace(PROBE, indices=tuple(meta["indices"])))
    item = reader.read_window(0, WINDOW)
    batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
    return predict_proba(clf, maker(batch))[0].numpy(), item["valid"].numpy()


def _raw_input(scene: Path, names: list[str]) -> np.ndarray:
    """The graph's input: the raw bands of WINDOW in the order of its metadata."""
    s1, _ = read_s1(scene / "scene_s1.tif", WINDOW)
    s2_names = [n.split()[1] for n in names if n.startswith("S2")]
    s2, _ = read_s2(scene / "scene_s2.tif", s2_names, WINDOW)
    parts = [s1] if names[0].startswith("S1") else []
    return np.concatenate([*parts, s2])[None].astype(np.float32)


@pytest.mark.parametrize("kind", ["pretrained", "pretrained+raw", "raw"])
def test_onnx_output_equals_sarfuse_on_a_tile(scene, checkpoint, tmp_path, kind):
    probe = _probe(scene, tmp_path / "probe", None if kind == "raw" else checkpoint, features=kind)
    out = tmp_path / "model.onnx"
    result = export_onnx(probe, out, tiling=TILING)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = json.loads(meta["input_bands"])
    assert names == result["inputs"] and names[:2] == ["S1 VV", "S1 VH"]
    onnx_proba = session.run(None, {"bands": _raw_input(scene, names)})[0][0]
    expected, valid = _sarfuse_proba(probe, scene)
    assert valid.all()  # the generated scene has no holes: every pixel compares
    assert np.abs(onnx_proba - expected).max() < 1e-4
    assert expected.std() > 1e-3  # not a constant map that any graph would match


def test_deepness_metadata(scene, tmp_path):
    probe = _probe(scene, tmp_path / "probe", None, features="raw")
    out = tmp_path / "m.onnx"
    export_onnx(probe, out, tiling=TILING)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["model_type"] == "Segmentor"
    scheme = json.loads(json.dumps(discover(scene).scheme.to_json()))
    assert list(meta["class_names"].values()) == [c["name"] for c in scheme["classes"]]
    assert list(meta["class_names"]) == [str(i) for i in range(len(scheme["classes"]))]
    assert (meta["resolution"], meta["tile_size"], meta["tiles_overlap"]) == (1000, TILE, 25)
    (inp,) = session.get_inputs()
    assert inp.shape[1:] == [len(meta["input_bands"]), TILE, TILE]
    assert session.get_outputs()[0].shape[1:] == [len(scheme["classes"]), TILE, TILE]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": "raw", "classifier": "rf"}, "random-forest probe cannot be exported"),
        ({"features": "random"}, "random features cannot be exported"),
    ],
)
def test_unexportable_probes_are_refused(scene, checkpoint, tmp_path, changes, message):
    ckpt = None if changes["features"] == "raw" else checkpoint
    probe = _probe(scene, tmp_path / "probe", ckpt, **changes)
    with pytest.raises(SarfuseError, match=message):
        export_onnx(probe, tmp_path / "m.onnx", tiling=TILING)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("sensor", ["s1", "s2"])
def test_one_sensor_data_exports(scene, tmp_path, sensor):
    """S1-only and S2-only probes: the graph's input holds that sensor's bands only."""
    files = {s: scene / f"scene_{s}.tif" if s == sensor else "" for s in ("s1", "s2")}
    index = tmp_path / "one.csv"
    index.write_text(f"s1,s2,label\n{files['s1']},{files['s2']},{scene / 'scene_label.tif'}\n")
    source = discover(index)
    assert source.sensors == (sensor,)
    cfg = replace(PROBE, features="raw")
    run_probe(source, tmp_path / "probe", cfg, None, progress=False)
    names = export_onnx(tmp_path / "probe", tmp_path / "m.onnx", tiling=TILING)["inputs"]
    assert {n.split()[0] for n in names} == {sensor.upper()}
