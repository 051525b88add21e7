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
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.inference import map_scene
from sarfuse.mapping.tiling import tile_windows, window_weights

K = 3
COLORS = {0: (0, 153, 0), 1: (0, 0, 255), 2: (200, 200, 200)}
TILES = {"config": MapConfig(32, 8, batch_tiles=1), "progress": False}


def _scene(h: int = 70, w: int = 90, seed: int = 0):
    """Inputs ``x`` (2, h, w), a validity mask with holes, and a UTM grid."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w)).astype(np.float32)
    valid = np.ones((h, w), dtype=bool)
    valid[5:9, w // 2 : w // 2 + 12] = False
    valid[:, -1] = False
    info = RasterInfo(CRS.from_epsg(32633), Affine(10.0, 0, 500000.0, 0, -10.0, 4.2e6), w, h)
    return x, valid, info


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


# (70, 90): 3 x 4 tiles; (57, 57): three tile rows overlap the same pixels; (20, 100): one row
@pytest.mark.parametrize("shape", [(70, 90), (57, 57), (20, 100)])
@pytest.mark.parametrize("context", [False, True])
def test_tiled_map_equals_one_piece_map(tmp_path, shape, context):
    x, valid, info = _scene(*shape)
    predict, read = _predict(context), _reader(x, valid)
    names = {"class_names": ["a", "b", "c"]}
    tiled = map_scene(predict, read, info, tmp_path / "t.tif", K, **TILES, **names,
                      probabilities_path=tmp_path / "tp.tif")  # fmt: skip
    whole = map_scene(predict, read, info, tmp_path / "w.tif", K, MapConfig(512), progress=False,
                      probabilities_path=tmp_path / "wp.tif", **names)  # fmt: skip
    assert whole["tiles"] == 1 and tiled["tiles"] > 2
    p_tiled, p_whole = _read(tmp_path / "tp.tif"), _read(tmp_path / "wp.tif")
    c_tiled, c_whole = _read(tmp_path / "t.tif")[0], _read(tmp_path / "w.tif")[0]
    assert np.isnan(p_tiled[:, ~valid]).all()
    np.testing.assert_allclose(p_tiled[:, valid].sum(0), 1.0, atol=1e-5)
    if not context:  # pixelwise: blending convex combinations of equal values is exact
        np.testing.assert_allclose(p_tiled[:, valid], p_whole[:, valid], atol=1e-6)
        np.testing.assert_array_equal(c_tiled, c_whole)
    else:  # pixels next to a tile edge see padding, but get a tiny blending weight there
        np.testing.assert_allclose(p_tiled[:, valid], p_whole[:, valid], atol=0.03)
        top2 = np.sort(p_whole, axis=0)[-2:]
        clear = valid & (top2[1] - top2[0] > 0.1)
        np.testing.assert_array_equal(c_tiled[clear], c_whole[clear])
    assert (c_tiled[~valid] == 255).all()
    counts = tiled["class_pixels"]
    assert sum(counts.values()) == valid.sum() and tiled["invalid_pixels"] == (~valid).sum()


@pytest.mark.parametrize("shape", [(70, 90), (57, 57)])
def test_streamed_blend_equals_direct_weighted_mean(tmp_path, shape):
    """Each tile predicts its own constant; the map must hold sum(w_t p_t) / sum(w_t)."""
    _, _, info = _scene(*shape)
    rng = np.random.default_rng(0)
    windows = tile_windows(info.height, info.width, 32, 8)
    per_tile = {w: rng.dirichlet(np.ones(K)).astype(np.float32) for w in windows}

    def read(window):
        return {"window": window, "valid": np.ones(window[2:], dtype=bool)}

    def predict(inputs):
        window = inputs["window"]
        return np.broadcast_to(per_tile[window][:, None, None], (K, *window[2:]))

    out = {"probabilities_path": tmp_path / "p.tif"}
    map_scene(predict, read, info, tmp_path / "m.tif", K, **TILES, **out)
    total, weight = np.zeros((K, *info.shape)), np.zeros(info.shape)
    for w in windows:
        r, c, h, wd = w
        wt = window_weights(w, *info.shape, 8)
        total[:, r : r + h, c : c + wd] += per_tile[w][:, None, None] * wt
        weight[r : r + h, c : c + wd] += wt
    np.testing.assert_allclose(_read(tmp_path / "p.tif"), total / weight, atol=1e-5)


def test_geotiff_has_grid_dtype_nodata_colours_and_names(tmp_path):
    x, valid, info = _scene()
    out = tmp_path / "map.tif"
    map_scene(_predict(False), _reader(x, valid), info, out, K, **TILES, colormap=COLORS,
              class_names=["forest", "water", "urban"])  # fmt: skip
    with rasterio.open(out) as src:
        assert src.crs == info.crs and src.transform == info.transform
        assert (src.width, src.height, src.count) == (info.width, info.height, 1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        classes = src.read(1)
        cmap = src.colormap(1)
        assert json.loads(src.tags()["class_names"]) == ["forest", "water", "urban"]
    assert (classes[~valid] == 255).all() and (classes[valid] < K).all()
    assert all(cmap[i][:3] == rgb for i, rgb in COLORS.items())
    assert cmap[255][3] == 0  # nodata transparent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]  # no sidecar left


def test_interrupted_run_leaves_no_map_and_resumes(tmp_path):
    x, valid, info = _scene(seed=1)
    read, predict = _reader(x, valid), _predict(True)
    ref, ref_p = tmp_path / "ref.tif", tmp_path / "ref_p.tif"
    map_scene(predict, read, info, ref, K, **TILES, probabilities_path=ref_p)
    calls = {"n": 0}

    def flaky(inputs, fail_at: int | None = 9):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("killed")
        return predict(inputs)

    out, prob = tmp_path / "run" / "map.tif", tmp_path / "run" / "p.tif"
    with pytest.raises(RuntimeError, match="killed"):
        map_scene(flaky, read, info, out, K, **TILES, probabilities_path=prob)
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.tif.partial"]  # no half map
    kept = sorted(p.name for p in (out.parent / "map.tif.partial").glob("band_*"))
    assert kept == ["band_0000000_0000019.npz", "band_0000019_0000038.npz"]
    calls["n"] = 0
    summary = map_scene(lambda i: flaky(i, None), read, info, out, K, **TILES,
                        probabilities_path=prob)  # fmt: skip
    # rows 0..37 were finished (tile rows start at 0, 19, 38); tile rows 19 and 38 reach past 38
    assert summary["resumed_at_row"] == 38 and calls["n"] == 8
    np.testing.assert_array_equal(_read(out), _read(ref))
    np.testing.assert_array_equal(_read(prob), _read(ref_p))
    assert summary["class_pixels"] == map_scene(predict, read, info, tmp_path / "again.tif", K,
                                                **TILES)["class_pixels"]  # fmt: skip
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.tif", "p.tif"]


def test_sidecar_of_another_job_is_discarded(tmp_path):
    x, valid, info = _scene()
    out = tmp_path / "map.tif"
    read, predict = _reader(x, valid), _predict(False)

    def crash(inputs):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        map_scene(crash, read, info, out, K, **TILES)
    (out.parent / "map.tif.partial" / "band_0000000_0000019.npz").write_bytes(b"junk")
    summary = map_scene(predict, read, info, out, K, MapConfig(16, 4), progress=False)
    assert summary["resumed_at_row"] == 0 and out.exists()


def test_bad_predictions_raise(tmp_path):
    x, valid, info = _scene()
    read = _reader(x, valid)
    with pytest.raises(SarfuseError, match="expected probabilities"):
        map_scene(lambda i: np.zeros((2, 4, 4)), read, info, tmp_path / "m.tif", K, **TILES)
    with pytest.raises(SarfuseError, match="class names"):
        map_scene(_predict(False), read, info, tmp_path / "m.tif", K, class_names=["a"])
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("batch", [2, 5])
def test_batched_map_equals_tile_by_tile(tmp_path, batch):
    x, valid, info = _scene()
    predict, read = _predict(True), _reader(x, valid)
    one = map_scene(predict, read, info, tmp_path / "one.tif", K, **TILES)
    batched = {**TILES, "config": MapConfig(32, 8, batch_tiles=batch)}
    many = map_scene(predict, read, info, tmp_path / "many.tif", K, **batched,
                     predict_many=lambda tiles: np.stack([predict(t) for t in tiles]))  # fmt: skip
    assert one["class_pixels"] == many["class_pixels"]
    np.testing.assert_array_equal(_read(tmp_path / "one.tif"), _read(tmp_path / "many.tif"))
