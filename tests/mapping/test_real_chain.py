"""The whole chain on the real Sen1Floods11 chip (skipped without ../shared/data): pretrain on the
chip without labels, probe with 4 labelled 64 x 64 patches, map the chip, and check that the map
sits on the chip's grid. A short run: this checks the plumbing on real values, not the accuracy
(benchmarks/sen1floods11_chain.py measures that)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from sarfuse.data.layouts import discover
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

TINY = PretrainConfig(steps=4, batch=8, width=4, feat_dim=8, patch_size=128, device="cpu")


def test_pretrain_probe_and_map_the_real_chip(shared_data: Path, tmp_path: Path) -> None:
    chip = shared_data / "sen1floods11"
    run = pretrain(chip, tmp_path / "run", TINY, progress=False)
    source = discover(chip)
    cfg = ProbeConfig(labels=4, patch_size=64, epochs=2)
    result = run_probe(source, tmp_path / "probe", cfg, run.checkpoint, progress=False)
    assert result["labelled_patches"] == 4 and result["eval_patches"] == 60
    assert set(result["per_class"]) == {"Not water", "Water"}
    assert 0.0 <= result["mIoU"] <= 1.0

    sample = source.samples[0]
    out = tmp_path / "map.tif"
    map_files(tmp_path / "probe", out, s1=sample.s1, s2=sample.s2, config=MapConfig(256, 32),
              progress=False, label=sample.label)  # fmt: skip
    with rasterio.open(sample.s2) as chip_tif, rasterio.open(out) as map_tif:
        assert map_tif.crs == chip_tif.crs and map_tif.crs.to_epsg() == 4326
        assert map_tif.transform == chip_tif.transform
        assert (map_tif.height, map_tif.width) == (512, 512)
        assert map_tif.dtypes[0] == "uint8"
        assert set(np.unique(map_tif.read(1))) <= {0, 1}  # the chip has no invalid S1/S2 pixel
    assert out.with_suffix(".png").stat().st_size > 0
