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
    assert MapConfig(precision="bf16").precision == "bf16"
    with pytest.raises(SarfuseError, match="--precision must be auto | 32 | bf16, got 'fp8'"):
        MapConfig(precision="fp8")


def test_defaults_come_from_the_config() -> None:
    cfg = MapConfig()
    # sarfuse map and map-many: their options default to None (a --config file may set them) and
    # show MapConfig's defaults in their help
    for fn in (cli.map_cmd, cli.map_many_cmd):
        params = inspect.signature(fn).parameters
        for name in ("tile", "overlap", "batch_tiles", "precision"):
            assert params[name].default is None
            assert f"[default: {getattr(cfg, name)}]" in _help(params[name])
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


def _help(param: inspect.Parameter) -> str:
    """The help text of a typer option parameter (Annotated[..., typer.Option(help=...)])."""
    option = next(m for m in param.annotation.__metadata__ if hasattr(m, "help"))
    return option.help
