"""Tiled scene mapping: equals the one-piece map, writes a proper GeoTIFF, resumes after a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sarfuse.data.raster import RasterInfo
from sarfuse.errors import SarfuseError
from sarfuse.mapping.inference import map_scene

K, H, W = 3, 70, 90
INFO = RasterInfo(CRS.from_epsg(32633), Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0), W, H)
COLORS = {0: (0, 153, 0), 1: (0, 0, 255), 2: (200, 200, 200)}


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, H, W)).astype(np.float32)
    valid = np.ones((H, W), dtype=bool)
    valid[5:9, 60:75] = False
    valid[:, -1] = False
    return x, valid


def _predict(context: bool):
    """Linear map -> (3x3 mean filter, edge-padded) -> softmax: deterministic, small context."""
    w = np.array([[1.5, -0.5], [-1.0, 1.0], [0.2, -1.2]], dtype=np.float32)

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        logits = np.einsum("kc,chw->khw", w, inputs["x"])  # (K, h, w)
        if context:
            pad = np.pad(logits, ((0, 0), (1, 1), (1, 1)), mode="edge")
            h, wd = logits.shape[1:]
            logits = sum(pad[:, i : i + h, j : j + wd] for i in range(3) for j in range(3)) / 9
        e = np.exp(logits - logits.max(0))
        return e / e.sum(0)

    return predict


def _reader(x: np.ndarray, valid: np.ndarray):
    def read(window):
        r, c, h, w = window
        return {"x": x[:, r : r + h, c : c + w], "valid": valid[r : r + h, c : c + w]}

    return read


def _read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.parametrize("context", [False, True])
def test_tiled_map_equals_one_piece_map(tmp_path, context):
    x, valid = _scene()
    predict, read = _predict(context), _reader(x, valid)
    kw = dict(class_names=["a", "b", "c"], progress=False)
    tiled = map_scene(
        predict,
        read,
        INFO,
        tmp_path / "tiled.tif",
        K,
        tile=32,
        overlap=8,
        probabilities_path=tmp_path / "tiled_p.tif",
        **kw,
    )
    map_scene(
        predict,
        read,
        INFO,
        tmp_path / "whole.tif",
        K,
        tile=512,
        overlap=64,
        probabilities_path=tmp_path / "whole_p.tif",
        **kw,
    )
    assert tiled["tiles"] == 12
    p_tiled, p_whole = _read(tmp_path / "tiled_p.tif"), _read(tmp_path / "whole_p.tif")
    c_tiled, c_whole = _read(tmp_path / "tiled.tif")[0], _read(tmp_path / "whole.tif")[0]
    assert np.isnan(p_tiled[:, ~valid]).all()
    if not context:  # pixelwise: blending convex combinations of equal values is exact
        np.testing.assert_allclose(p_tiled[:, valid], p_whole[:, valid], atol=1e-6)
        np.testing.assert_array_equal(c_tiled, c_whole)
    else:  # pixels next to a tile edge see padding, but get a tiny blending weight there
        np.testing.assert_allclose(p_tiled[:, valid], p_whole[:, valid], atol=0.03)
        top2 = np.sort(p_whole, axis=0)[-2:]
        clear = valid & (top2[1] - top2[0] > 0.1)
        np.testing.assert_array_equal(c_tiled[clear], c_whole[clear])
    counts = tiled["class_pixels"]
    assert sum(counts.values()) == valid.sum() and tiled["invalid_pixels"] == (~valid).sum()


def test_geotiff_has_grid_dtype_nodata_colours_and_names(tmp_path):
    x, valid = _scene()
    out = tmp_path / "map.tif"
    map_scene(
        _predict(False),
        _reader(x, valid),
        INFO,
        out,
        K,
        tile=32,
        overlap=8,
        colormap=COLORS,
        class_names=["forest", "water", "urban"],
        progress=False,
    )
    with rasterio.open(out) as src:
        assert src.crs == INFO.crs and src.transform == INFO.transform
        assert (src.width, src.height, src.count) == (W, H, 1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        classes = src.read(1)
        cmap = src.colormap(1)
        assert json.loads(src.tags()["class_names"]) == ["forest", "water", "urban"]
    assert (classes[~valid] == 255).all() and (classes[valid] < K).all()
    assert all(cmap[i][:3] == rgb for i, rgb in COLORS.items())
    assert cmap[255][3] == 0  # nodata transparent
    assert not (tmp_path / "map.tif.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_interrupted_run_leaves_no_map_and_resumes(tmp_path):
    x, valid = _scene(1)
    read, predict = _reader(x, valid), _predict(True)
    reference = tmp_path / "ref.tif"
    map_scene(
        predict,
        read,
        INFO,
        reference,
        K,
        tile=32,
        overlap=8,
        progress=False,
        probabilities_path=tmp_path / "ref_p.tif",
    )
    calls = {"n": 0}

    def flaky(inputs, fail_at: int | None = 9):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("killed")
        return predict(inputs)

    out, prob = tmp_path / "run" / "map.tif", tmp_path / "run" / "p.tif"
    with pytest.raises(RuntimeError, match="killed"):
        map_scene(
            flaky, read, INFO, out, K, tile=32, overlap=8, progress=False, probabilities_path=prob
        )
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.tif.partial"]  # no half map
    kept = sorted(p.name for p in (out.parent / "map.tif.partial").glob("band_*"))
    assert kept == ["band_0000000_0000019.npz", "band_0000019_0000038.npz"]
    calls["n"] = 0
    summary = map_scene(
        lambda i: flaky(i, None),
        read,
        INFO,
        out,
        K,
        tile=32,
        overlap=8,
        progress=False,
        probabilities_path=prob,
    )
    # rows 0..37 were finished (tile rows start at 0, 19, 38); tile rows 19 and 38 reach past 38
    assert summary["resumed_at_row"] == 38 and calls["n"] == 8
    np.testing.assert_array_equal(_read(out), _read(reference))
    np.testing.assert_array_equal(_read(prob), _read(tmp_path / "ref_p.tif"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.tif", "p.tif"]


def test_sidecar_of_another_job_is_discarded(tmp_path):
    x, valid = _scene()
    out = tmp_path / "map.tif"
    read, predict = _reader(x, valid), _predict(False)

    def crash(inputs):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        map_scene(crash, read, INFO, out, K, tile=32, overlap=8, progress=False)
    (out.parent / "map.tif.partial" / "band_0000000_0000019.npz").write_bytes(b"junk")
    summary = map_scene(predict, read, INFO, out, K, tile=16, overlap=4, progress=False)
    assert summary["resumed_at_row"] == 0 and out.exists()


def test_bad_predictions_raise(tmp_path):
    x, valid = _scene()
    with pytest.raises(SarfuseError, match="expected probabilities"):
        map_scene(
            lambda i: np.zeros((2, 4, 4)),
            _reader(x, valid),
            INFO,
            tmp_path / "m.tif",
            K,
            tile=32,
            overlap=8,
            progress=False,
        )
    with pytest.raises(SarfuseError, match="class names"):
        map_scene(
            _predict(False),
            _reader(x, valid),
            INFO,
            tmp_path / "m.tif",
            K,
            class_names=["a"],
            progress=False,
        )
    assert not (tmp_path / "m.tif").exists()
