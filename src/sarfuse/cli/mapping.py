"""Mapping commands: ``probe``, ``map``, ``map-many`` and ``export``; options read from
``ProbeConfig`` and ``MapConfig``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, get_args

import typer

import sarfuse.cli.options as o
from sarfuse.cli.app import app, friendly, out
from sarfuse.errors import SarfuseError
from sarfuse.export import export_onnx
from sarfuse.mapping.config import EXPORT_TILING, MapConfig
from sarfuse.mapping.features import FeatureKind
from sarfuse.mapping.probe import CLASSIFIERS
from sarfuse.mapping.workflow import DecisionRule, ProbeConfig

FEATURE_CHOICES = (o.AUTO, *get_args(FeatureKind))
CLASSIFIER_CHOICES = (o.AUTO, *CLASSIFIERS)
DECISION_CHOICES = get_args(DecisionRule)
PROBE = o.field_options(
    ProbeConfig,
    choices={"features": FEATURE_CHOICES, "classifier": CLASSIFIER_CHOICES,
             "split_mode": o.split_modes(), "decision": DECISION_CHOICES},
    flags={"self_train": ("--self-train/--no-self-train",), "split_file": ("--split",),
           "decision_check": ("--decision-check/--no-decision-check",)},
)  # fmt: skip
MAP = o.field_options(MapConfig)

Checkpoint = Annotated[Path | None, typer.Option(help="Pretraining checkpoint (RUN/last.ckpt).")]
ProbeOut = Annotated[Path, typer.Option("--out", help="Probe folder.")]
ProbeDir = Annotated[Path, typer.Option("--probe", help="Folder written by `sarfuse probe`.")]
S1Scene = Annotated[
    Path | None, typer.Option(help="Sentinel-1 scene (VV, VH): a GeoTIFF or a STAC item JSON.")
]
S2Scene = Annotated[
    Path | None,
    typer.Option(
        help="Sentinel-2 scene: a GeoTIFF, a .SAFE product (folder or zip) or a STAC item JSON."
    ),
]
MapCheckpoint = Annotated[Path | None, typer.Option(help="Checkpoint (default: the probe's).")]


def probe_config(options: dict) -> ProbeConfig:
    """The dataclass's defaults < ``--config`` < the options given; the device resolved (auto
    unless a file or the option names one)."""
    from sarfuse.mapping.features import NEEDS_CHECKPOINT
    from sarfuse.runtime import torch_device

    cfg = o.layered(replace(ProbeConfig(), device=o.AUTO), options["config"], options)
    o.check_choice("--features", cfg.features, FEATURE_CHOICES)
    o.check_choice("--classifier", cfg.classifier, CLASSIFIER_CHOICES)
    o.check_choice("--split-mode", cfg.split_mode, o.split_modes())
    o.check_choice("--decision", cfg.decision, DECISION_CHOICES)
    if cfg.features in NEEDS_CHECKPOINT and options["checkpoint"] is None:
        flag = f"--features {cfg.features}"
        raise SarfuseError(None, f"{flag} needs --checkpoint (or use --features raw)")
    return replace(cfg, device=torch_device(cfg.device))


@app.command()
@friendly
@o.takes(
    PROBE,
    "labels patch_size features classifier self_train indices epochs supervised_steps seed "
    "n_eval split_mode block_size buffer split_file decision decision_check",
)
def probe(
    data: o.DataArg = None,
    checkpoint: Checkpoint = None,
    out_dir: ProbeOut = Path("runs/probe"),
    config: o.ConfigOpt = None,
    classes: o.ClassesOpt = None,
    device: o.DeviceOpt = None,
    s2_offset: o.S2OffsetOpt = None,
    **fields,
) -> None:
    """Train a linear (or random-forest) classifier on few labelled patches and evaluate it.

    The probe folder keeps the settings it ran with in config.json (loadable by --config)."""
    from sarfuse.mapping.decision import describe as describe_decision
    from sarfuse.mapping.metrics import format_table
    from sarfuse.mapping.selection import describe
    from sarfuse.mapping.workflow import run_probe
    from sarfuse.runtime import resolve_source

    cfg = probe_config({**locals(), **fields})
    source = resolve_source(o.data_arg(data), classes, cfg.s2_offset)
    result = run_probe(source, out_dir, cfg, checkpoint)  # locks out_dir while it writes
    out.print(format_table(result))
    out.print(describe(result["selection"]))
    out.print(describe_decision(result["decision"]))
    out.print(f"metrics: {out_dir / 'metrics.json'}\nconfusion matrix: {out_dir / 'confusion.png'}")


def map_config_file(map_file: Path) -> Path:
    """Where a map's settings are kept: MAP.config.yaml beside MAP.tif."""
    return map_file.with_name(f"{map_file.stem}.config.yaml")


@app.command("map")
@friendly
@o.takes(MAP, "tile overlap probabilities cog batch_tiles precision")
def map_cmd(
    probe_dir: ProbeDir,
    out_file: Annotated[Path, typer.Option("--out", help="Output GeoTIFF.")],
    s1: S1Scene = None,
    s2: S2Scene = None,
    checkpoint: MapCheckpoint = None,
    config: o.ConfigOpt = None,
    device: o.DeviceOpt = None,
    s2_offset: o.S2OffsetOpt = None,
    **fields,
) -> None:
    """Map a whole scene of any size to a coloured, georeferenced GeoTIFF (and a PNG).

    Beside the map: MAP.tif.aux.xml (class names GDAL reads), MAP.qml (the QGIS style) and
    MAP.config.yaml (the settings, loadable by --config)."""
    from sarfuse.mapping.scene import map_files
    from sarfuse.runconfig import save_config
    from sarfuse.runtime import torch_device

    cfg = o.layered(MapConfig(), config, fields)
    result = map_files(
        probe_dir, out_file, s1=s1, s2=s2, checkpoint=checkpoint, config=cfg,
        device=torch_device(device or o.AUTO), s2_offset=s2_offset,
    )  # fmt: skip
    save_config(cfg, map_config_file(out_file))
    out.print(
        f"map: {result['path']} ({result['tiles']} tiles, network in {result['precision']})\n"
        f"quicklook: {result['quicklook']}\n"
        f"QGIS style: {result['style']}"
    )


@app.command()
@friendly
def export(
    probe_dir: ProbeDir,
    out_file: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    checkpoint: MapCheckpoint = None,
    tile: Annotated[
        int, typer.Option(help="Input tile side in pixels (fixed in the graph).")
    ] = EXPORT_TILING.tile,
    overlap: Annotated[
        int, typer.Option(help="Suggested overlap of tiles, in pixels.")
    ] = EXPORT_TILING.overlap,
) -> None:
    """Export network + normalisation + linear probe as one ONNX graph (QGIS Deepness ready)."""
    result = export_onnx(probe_dir, out_file, checkpoint, MapConfig(tile, overlap))
    out.print(
        f"model: {result['path']}\ninput 'bands' (1, {len(result['inputs'])}, {tile}, {tile}): "
        f"{', '.join(result['inputs'])}\noutput 'probabilities': {', '.join(result['classes'])}"
    )


@app.command("map-many")
@friendly
@o.takes(MAP, "tile overlap batch_tiles precision")
def map_many_cmd(
    probe_dir: ProbeDir,
    scenes: Annotated[
        Path, typer.Option(help="Folder of scenes, or a samples.csv (columns s1,s2[,name]).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder of the maps (<scene>.tif).")],
    workers: Annotated[int, typer.Option(help="Scenes mapped at once on this machine.")] = 1,
    shard: Annotated[
        str, typer.Option(help="I/N: map every N-th scene from the I-th (SLURM job arrays).")
    ] = "0/1",
    device: o.DeviceOpt = None,
    **fields,
) -> None:
    """Map many scenes with one probe: over --workers processes, and machines with --shard."""
    from sarfuse.mapping.many import map_many, parse_shard, scene_list
    from sarfuse.runtime import torch_device

    todo = scene_list(scenes, parse_shard(shard))
    cfg = o.layered(MapConfig(), None, fields)
    options = {"config": cfg, "device": torch_device(device or o.AUTO)}
    for done, (sample, result) in enumerate(map_many(probe_dir, todo, out_dir, workers,
                                                     **options), 1):  # fmt: skip
        state = "exists, skipped" if result is None else f"{result['tiles']} tiles"
        out.print(f"[{done}/{len(todo)}] {sample.name}: {out_dir / sample.name}.tif ({state})")
