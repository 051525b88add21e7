"""The tiling rule lives in MapConfig alone; the CLI and the library read their defaults there."""

import inspect

import pytest

from sarfuse import cli
from sarfuse.errors import SarfuseError
from sarfuse.export import export_onnx
from sarfuse.mapping.config import EXPORT_TILING, MapConfig, check_tiling
from sarfuse.mapping.inference import map_scene
from sarfuse.mapping.many import map_many
from sarfuse.mapping.scene import map_files


@pytest.mark.parametrize(
    ("tile", "overlap"), [(12, 0), (0, 0), (512, 256), (512, -1), (64, 40)]
)  # fmt: skip
def test_a_tiling_the_network_cannot_take_is_refused(tile: int, overlap: int) -> None:
    with pytest.raises(SarfuseError, match="--tile must be a multiple of 8"):
        check_tiling(tile, overlap)


def test_valid_tilings_and_batch_size() -> None:
    check_tiling(8, 0)
    check_tiling(512, 255)
    assert MapConfig(256, 32, 2).batch_tiles == 2
    with pytest.raises(SarfuseError, match="--batch-tiles"):
        MapConfig(batch_tiles=0)


def test_defaults_come_from_the_config() -> None:
    cfg = MapConfig()
    # sarfuse map: its options default to None (a --config file may set them); tests/test_cli.py
    # checks that its help and its run use these defaults
    for fn in (cli.map_many_cmd,):
        params = inspect.signature(fn).parameters
        assert params["tile"].default == cfg.tile and params["overlap"].default == cfg.overlap
        if "batch_tiles" in params:
            assert params["batch_tiles"].default == cfg.batch_tiles
    export = inspect.signature(cli.export).parameters
    assert (export["tile"].default, export["overlap"].default) == (
        EXPORT_TILING.tile,
        EXPORT_TILING.overlap,
    )
    assert inspect.signature(export_onnx).parameters["tiling"].default is EXPORT_TILING


def test_the_library_takes_a_map_config_not_tile_numbers() -> None:
    """No second home of the tiling defaults: the mapping functions take the config itself."""
    for fn in (map_files, map_scene, map_many):
        params = inspect.signature(fn).parameters
        assert "config" in params and params["config"].default is None
        assert not {"tile", "overlap", "batch_tiles"} & set(params)
