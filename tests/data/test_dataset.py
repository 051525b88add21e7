"""PatchDataset: patch grid, padding and masking, normalised values, labels, indices, segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sarfuse.data.dataset import PatchDataset
from sarfuse.data.indices import ndvi
from sarfuse.data.layouts import discover
from sarfuse.data.raster import RasterInfo, write_geotiff
from sarfuse.errors import SarfuseError
from sarfuse.superpixels import SuperpixelParams

SIZE = 300
GRID = RasterInfo.make(SIZE, SIZE)
# raw values that the paper's statistics map to exactly 1.0
S1_ONE = {"VV": -9.02 + 3.58, "VH": -15.73 + 3.67}
S2_ONE = {"B2": 1353 + 242, "B3": 1265 + 291, "B4": 1269 + 403, "B8": 1976 + 517}
NAN_PIXEL = (10, 20)


def _scene(folder, label_grid: RasterInfo = GRID, s1=True, s2=True, label=True):
    """A 300 x 300 S1+S2+label scene listed in samples.csv; S1 has one NaN pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    if s1:
        data = np.stack([np.full((SIZE, SIZE), v, np.float32) for v in S1_ONE.values()])
        data[(0, *NAN_PIXEL)] = np.nan
        write_geotiff(folder / "s1.tif", data, GRID)
    if s2:
        data = np.full((13, SIZE, SIZE), 2000, np.uint16)
        for band, value in S2_ONE.items():
            data[["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"].index(band)] = value
        write_geotiff(folder / "s2.tif", data, GRID)
    if label:
        write_geotiff(folder / "y.tif", np.full((SIZE, SIZE), 4, np.uint8), label_grid)
    cells = ["s1.tif" if s1 else "", "s2.tif" if s2 else "", "y.tif" if label else ""]
    (folder / "samples.csv").write_text("s1,s2,label\n" + ",".join(cells) + "\n")
    return discover(folder)


def test_grid_of_padded_patches(tmp_path):
    dataset = PatchDataset(_scene(tmp_path), patch_size=256)
    assert len(dataset) == 4 and dataset.scene_shapes == [(SIZE, SIZE)]
    assert dataset.sensors == ("s1", "s2")
    items = [dataset[i] for i in range(4)]
    assert [item["window"] for item in items] == [(0, 0), (0, 256), (256, 0), (256, 256)]
    assert [int(item["valid"].sum()) for item in items] == [
        256 * 256 - 1,
        256 * 44,
        44 * 256,
        44 * 44,
    ]
    first, edge = items[0], items[1]
    assert first["s1"].shape == (2, 256, 256) and first["s2"].shape == (4, 256, 256)
    assert first["s1"].dtype == torch.float32 and first["label"].dtype == torch.int64
    assert first["path"] == str(tmp_path / "s1.tif")
    assert not first["valid"][NAN_PIXEL]
    valid = first["valid"]
    torch.testing.assert_close(first["s1"][:, valid], torch.ones(2, int(valid.sum())))
    torch.testing.assert_close(first["s2"][:, valid], torch.ones(4, int(valid.sum())))
    assert (first["s1"][:, ~valid] == 0).all() and (first["s2"][:, ~valid] == 0).all()
    assert first["label"][NAN_PIXEL] == 255 and (first["label"][valid] == 3).all()
    assert edge["valid"][:, :44].all() and not edge["valid"][:, 44:].any()
    assert (edge["s1"][:, :, 44:] == 0).all() and (edge["label"][:, 44:] == 255).all()
    assert "indices" not in first and "segments" not in first


def test_indices_read_extra_bands_but_return_model_bands(tmp_path):
    dataset = PatchDataset(_scene(tmp_path), patch_size=128, indices=("ndvi", "ndbi", "mean_sar"))
    item = dataset[0]
    assert item["s2"].shape == (4, 128, 128) and item["indices"].shape == (3, 128, 128)
    expected_ndvi = ndvi(np.float32(S2_ONE["B4"]), np.float32(S2_ONE["B8"]))
    valid = item["valid"]
    torch.testing.assert_close(item["indices"][0, 5, 5], torch.tensor(float(expected_ndvi)))
    torch.testing.assert_close(item["indices"][1, 5, 5], torch.tensor((2000 - 2493) / 4493))
    torch.testing.assert_close(
        item["indices"][2, 5, 5], torch.tensor((S1_ONE["VV"] + S1_ONE["VH"]) / 2)
    )
    assert (item["indices"][:, ~valid] == 0).all()


def test_one_sensor_no_label(tmp_path):
    s2_only = PatchDataset(_scene(tmp_path / "a", s1=False, label=False), patch_size=256)
    item = s2_only[3]
    assert set(item) == {"s2", "valid", "path", "window"} and s2_only.sensors == ("s2",)
    s1_only = PatchDataset(_scene(tmp_path / "b", s2=False), patch_size=256, s1_bands=("VH",))
    item = s1_only[0]
    assert item["s1"].shape == (1, 256, 256) and "s2" not in item
    assert torch.allclose(item["s1"][0, 0, 0], torch.tensor(1.0))
    with pytest.raises(SarfuseError, match="need S2 data"):
        PatchDataset(s1_only.source, 256, indices=("ndwi",))


def test_batches_collate(tmp_path):
    dataset = PatchDataset(_scene(tmp_path), patch_size=256)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["s1"].shape == (4, 2, 256, 256) and batch["valid"].shape == (4, 256, 256)
    assert batch["label"].shape == (4, 256, 256)


def test_misaligned_label_refused_or_reprojected(tmp_path):
    shifted = RasterInfo.make(SIZE, SIZE, origin=(500000.0 + 30.0, 5000000.0))  # 3 px east
    source = _scene(tmp_path, label_grid=shifted)
    with pytest.raises(SarfuseError) as err:
        PatchDataset(source, patch_size=256)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'y.tif'}: does not line up with {tmp_path / 's1.tif'}")
    item = PatchDataset(source, patch_size=256, reproject=True)[0]
    assert (item["label"][:, :3] == 255).all() and (item["label"][20:, 3:] == 3).all()


def test_band_problems_reported_when_built(tmp_path):
    source = _scene(tmp_path)
    with pytest.raises(SarfuseError, match="unknown S2 band 'B13'"):
        PatchDataset(source, 256, s2_bands=("B2", "B13"))
    write_geotiff(tmp_path / "s2.tif", np.ones((5, SIZE, SIZE), np.uint16), GRID)
    with pytest.raises(SarfuseError, match="s2.tif: expected a Sentinel-2 stack"):
        PatchDataset(source, 256)


def test_segments_single_and_multi_scale(tmp_path):
    source = _scene(tmp_path)
    one = PatchDataset(source, patch_size=64, superpixels=SuperpixelParams())[4]
    assert one["segments"].shape == (64, 64) and one["segments"].dtype == torch.int64
    scales = [SuperpixelParams(scale=50), SuperpixelParams(scale=400)]
    multi = PatchDataset(source, patch_size=64, superpixels=scales)[4]
    assert multi["segments"].shape == (2, 64, 64)
    ids = multi["segments"][0].unique()
    torch.testing.assert_close(ids, torch.arange(len(ids)))


def test_real_sen1floods11(shared_data):
    full = PatchDataset(discover(shared_data / "sen1floods11"), patch_size=256)
    assert len(full) == 4
    item = full[0]
    assert set(item) >= {"s1", "s2", "valid", "label"}
    assert set(item["label"].unique().tolist()) <= {0, 1, 255}
    s1_only = PatchDataset(discover(shared_data / "sen1floods11-s1"), patch_size=256)
    assert len(s1_only) == 48 and s1_only.sensors == ("s1",)
    paraguay = next(i for i, (s, _) in enumerate(s1_only.patches) if s == 7)
    assert s1_only.source.samples[7].name == "Paraguay_34417"
    assert not s1_only[paraguay]["valid"].any()
    assert (s1_only[paraguay]["label"] == 255).all()
