"""``map-many``: a CSV of scenes, sharded and over two worker processes, equals one-by-one maps."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.many import map_many, parse_shard, scene_list
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.workflow import ProbeConfig, run_probe

PROBE = ProbeConfig(labels=2, patch_size=64, epochs=2, features="raw", classifier="linear")
OPTIONS = {"config": MapConfig(64, 16), "quicklook": False}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three generated scenes listed in one samples.csv, and a raw-band probe."""
    root = tmp_path_factory.mktemp("many")
    rows = ["name,s1,s2"]
    for seed in range(3):
        data = generate(root / f"scene{seed}", size=96, seed=seed, layout="scene")
        rows.append(f"s{seed},{data / 'scene_s1.tif'},{data / 'scene_s2.tif'}")
    (root / "samples.csv").write_text("\n".join(rows) + "\n")
    probe = root / "probe"
    run_probe(discover(root / "scene0"), probe, PROBE, progress=False)
    return root / "samples.csv", probe


def test_shards_split_the_list_without_overlap(scenes):
    csv, _ = scenes
    shards = [[s.name for s in scene_list(csv, (i, 2))] for i in range(2)]
    assert shards == [["s0", "s2"], ["s1"]]
    with pytest.raises(SarfuseError, match="0 <= I < N"):
        parse_shard("2/2")
    with pytest.raises(SarfuseError, match="I/N"):
        parse_shard("half")


def test_two_workers_map_like_one_by_one_and_skip_done_scenes(scenes, tmp_path):
    csv, probe = scenes
    todo = scene_list(csv)
    done = dict(map_many(probe, todo, tmp_path / "maps", workers=2, **OPTIONS))
    assert sorted(s.name for s in done) == ["s0", "s1", "s2"]
    for sample in todo:
        ref = map_files(probe, tmp_path / f"ref-{sample.name}.tif", s1=sample.s1, s2=sample.s2,
                        progress=False, **OPTIONS)  # fmt: skip
        with (
            rasterio.open(ref["path"]) as a,
            rasterio.open(tmp_path / "maps" / f"{sample.name}.tif") as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read())
    again = list(map_many(probe, todo, tmp_path / "maps", workers=2, **OPTIONS))
    assert [r for _, r in again] == [None, None, None]  # all exist: skipped


def test_cli_maps_its_shard_only(scenes, tmp_path):
    from typer.testing import CliRunner

    from sarfuse.cli import app

    csv, probe = scenes
    args = ["map-many", "--probe", str(probe), "--scenes", str(csv), "--out", str(tmp_path),
            "--shard", "1/2", "--tile", "64", "--overlap", "16", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["s1.tif"]
    bad = CliRunner().invoke(app, [*args[:-6], "--shard", "3/2"])
    assert bad.exit_code != 0 and "0 <= I < N" in bad.output
