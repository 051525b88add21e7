"""Mapping commands: ``probe``, ``map``, ``map-many`` and ``export``; options read from
``ProbeConfig`` and ``MapConfig``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, get_args

import typer

from sarfuse.cli.app import app, friendly, out
from sarfuse.cli.options import (
    AUTO,
    BLOCK_SIZE_HELP,
    BUFFER_HELP,
    SPLIT_MODE_HELP,
    ClassesOpt,
    ConfigOpt,
    DataArg,
    DeviceOpt,
    S2OffsetOpt,
    check_choice,
    csv_words,
    data_arg,
    field_option,
    layered,
    split_modes,
)
from sarfuse.errors import SarfuseError
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.features import FeatureKind
from sarfuse.mapping.probe import CLASSIFIERS
from sarfuse.mapping.workflow import AUTO_FEATURES, ProbeConfig

Q, M = ProbeConfig, MapConfig
FEATURE_CHOICES = (AUTO, *get_args(FeatureKind))
CLASSIFIER_CHOICES = (AUTO, *CLASSIFIERS)
FEATURES_HELP = (
    f"{AUTO} (chosen by cross-validation over the labelled patches among "
    f"{', '.join(AUTO_FEATURES)}) | {' | '.join(get_args(FeatureKind))} (supervised: a network "
    "trained from scratch on the labelled patches only)"
)

Checkpoint = Annotated[Path | None, typer.Option(help="Pretraining checkpoint (RUN/last.ckpt).")]
Labels = Annotated[int | None, field_option(Q, "labels", "Number of labelled patches.")]
ProbeOut = Annotated[Path, typer.Option("--out", help="Probe folder.")]
PatchSize = Annotated[
    int | None, field_option(Q, "patch_size", "Patch side; N counts these patches.")
]
Features = Annotated[str | None, field_option(Q, "features", FEATURES_HELP)]
Classifier = Annotated[
    str | None,
    field_option(
        Q, "classifier", f"{AUTO} (by the same cross-validation) | {' | '.join(CLASSIFIERS)}"
    ),
]
SelfTrain = Annotated[
    bool | None,
    field_option(
        Q,
        "self_train",
        "Pseudo labels from the scheme's index rules, then self-training on unlabelled "
        "patches (never the evaluation patches).",
        "--self-train/--no-self-train",
    ),
]
Indices = Annotated[
    str | None, field_option(Q, "indices", "Spectral indices appended to the features.")
]
Epochs = Annotated[int | None, field_option(Q, "epochs", "Linear probe epochs.")]
SupervisedSteps = Annotated[
    int | None,
    field_option(Q, "supervised_steps", "Steps of the --features supervised network."),
]
Seed = Annotated[int | None, field_option(Q, "seed", "Seed of the split and the classifier.")]
NEval = Annotated[int | None, field_option(Q, "n_eval", "Fixed number of evaluation patches.")]
SplitModeOpt = Annotated[str | None, field_option(Q, "split_mode", SPLIT_MODE_HELP)]
BlockSize = Annotated[int | None, field_option(Q, "block_size", BLOCK_SIZE_HELP)]
Buffer = Annotated[int | None, field_option(Q, "buffer", BUFFER_HELP)]
SplitFile = Annotated[
    str | None,
    field_option(
        Q,
        "split_file",
        "Reuse a saved split (PROBE_DIR/split.json of another run, e.g. of other features): the "
        "same patches, matched by file and window.",
        "--split",
    ),
]
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
Tile = Annotated[int | None, field_option(M, "tile", "Tile side in pixels.")]
Overlap = Annotated[int | None, field_option(M, "overlap", "Overlap of neighbouring tiles.")]
Probabilities = Annotated[
    bool | None,
    field_option(M, "probabilities", "Also write class probabilities (float32, a band per class)."),
]
Cog = Annotated[
    bool | None, field_option(M, "cog", "Write Cloud Optimized GeoTIFFs with overviews.")
]
BatchTiles = Annotated[
    int | None,
    field_option(M, "batch_tiles", "Tiles per forward pass (more suits a GPU; memory grows)."),
]


def probe_config(options: dict) -> ProbeConfig:
    """The dataclass's defaults < ``--config`` < the options given; the device resolved (auto
    unless a file or the option names one)."""
    from sarfuse.mapping.features import NEEDS_CHECKPOINT
    from sarfuse.runtime import torch_device

    options = {**options, "indices": csv_words(options["indices"])}
    cfg = layered(replace(ProbeConfig(), device=AUTO), options["config"], options)
    check_choice("--features", cfg.features, FEATURE_CHOICES)
    check_choice("--classifier", cfg.classifier, CLASSIFIER_CHOICES)
    check_choice("--split-mode", cfg.split_mode, split_modes())
    if cfg.features in NEEDS_CHECKPOINT and options["checkpoint"] is None:
        flag = f"--features {cfg.features}"
        raise SarfuseError(None, f"{flag} needs --checkpoint (or use --features raw)")
    return replace(cfg, device=torch_device(cfg.device))


@app.command()
@friendly
def probe(
    data: DataArg = None,
    checkpoint: Checkpoint = None,
    labels: Labels = None,
    out_dir: ProbeOut = Path("runs/probe"),
    config: ConfigOpt = None,
    patch_size: PatchSize = None,
    features: Features = None,
    classifier: Classifier = None,
    self_train: SelfTrain = None,
    indices: Indices = None,
    epochs: Epochs = None,
    supervised_steps: SupervisedSteps = None,
    seed: Seed = None,
    n_eval: NEval = None,
    classes: ClassesOpt = None,
    split_mode: SplitModeOpt = None,
    block_size: BlockSize = None,
    buffer: Buffer = None,
    split_file: SplitFile = None,
    device: DeviceOpt = None,
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Train a linear (or random-forest) classifier on few labelled patches and evaluate it.

    The probe folder keeps the settings it ran with in config.json (loadable by --config)."""
    from sarfuse.lock import output_lock
    from sarfuse.mapping.metrics import format_table
    from sarfuse.mapping.workflow import run_probe
    from sarfuse.runtime import resolve_source

    cfg = probe_config(dict(locals()))
    source = resolve_source(data_arg(data), classes, cfg.s2_offset)
    with output_lock(out_dir):
        result = run_probe(source, out_dir, cfg, checkpoint)
    out.print(format_table(result))
    out.print(f"metrics: {out_dir / 'metrics.json'}\nconfusion matrix: {out_dir / 'confusion.png'}")


def map_config_file(map_file: Path) -> Path:
    """Where a map's settings are kept: MAP.config.yaml beside MAP.tif."""
    return map_file.with_name(f"{map_file.stem}.config.yaml")


@app.command("map")
@friendly
def map_cmd(
    probe_dir: ProbeDir,
    out_file: Annotated[Path, typer.Option("--out", help="Output GeoTIFF.")],
    s1: S1Scene = None,
    s2: S2Scene = None,
    checkpoint: MapCheckpoint = None,
    config: ConfigOpt = None,
    tile: Tile = None,
    overlap: Overlap = None,
    probabilities: Probabilities = None,
    cog: Cog = None,
    batch_tiles: BatchTiles = None,
    device: DeviceOpt = None,
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Map a whole scene of any size to a coloured, georeferenced GeoTIFF (and a PNG).

    Beside the map: MAP.tif.aux.xml (class names GDAL reads), MAP.qml (the QGIS style) and
    MAP.config.yaml (the settings, loadable by --config)."""
    from sarfuse.mapping.scene import map_files
    from sarfuse.runconfig import save_config
    from sarfuse.runtime import torch_device

    cfg = layered(MapConfig(), config, dict(locals()))
    result = map_files(
        probe_dir, out_file, s1=s1, s2=s2, checkpoint=checkpoint, tile=cfg.tile,
        overlap=cfg.overlap, probabilities=cfg.probabilities, device=torch_device(device or AUTO),
        cog=cfg.cog, s2_offset=s2_offset, batch_tiles=cfg.batch_tiles,
    )  # fmt: skip
    save_config(cfg, map_config_file(out_file))
    out.print(
        f"map: {result['path']} ({result['tiles']} tiles)\nquicklook: {result['quicklook']}\n"
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
    ] = 256,
    overlap: Annotated[int, typer.Option(help="Suggested overlap of tiles, in pixels.")] = 32,
) -> None:
    """Export network + normalisation + linear probe as one ONNX graph (QGIS Deepness ready)."""
    from sarfuse.export import export_onnx

    result = export_onnx(probe_dir, out_file, checkpoint, tile=tile, overlap=overlap)
    out.print(
        f"model: {result['path']}\ninput 'bands' (1, {len(result['inputs'])}, {tile}, {tile}): "
        f"{', '.join(result['inputs'])}\noutput 'probabilities': {', '.join(result['classes'])}"
    )


@app.command("map-many")
@friendly
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
    tile: Annotated[int, typer.Option(help="Tile side in pixels.")] = MapConfig.tile,
    overlap: Annotated[
        int, typer.Option(help="Overlap of neighbouring tiles.")
    ] = MapConfig.overlap,
    device: DeviceOpt = None,
) -> None:
    """Map many scenes with one probe: over --workers processes, and machines with --shard."""
    from sarfuse.mapping.many import map_many, parse_shard, scene_list
    from sarfuse.runtime import torch_device

    todo = scene_list(scenes, parse_shard(shard))
    options = {"tile": tile, "overlap": overlap, "device": torch_device(device or AUTO)}
    for done, (sample, result) in enumerate(map_many(probe_dir, todo, out_dir, workers,
                                                     **options), 1):  # fmt: skip
        state = "exists, skipped" if result is None else f"{result['tiles']} tiles"
        out.print(f"[{done}/{len(todo)}] {sample.name}: {out_dir / sample.name}.tif ({state})")
