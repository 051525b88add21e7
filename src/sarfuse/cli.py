"""The ``sarfuse`` command line: parse, call the library, report. Errors become one line."""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sarfuse import __version__
from sarfuse.errors import Interrupted, SarfuseError, SarfuseWarning
from sarfuse.mapping.config import EXPORT_TILING, MapConfig

app = typer.Typer(
    help="Self-supervised SAR-optical (Sentinel-1/-2) fusion and few-label land-cover mapping.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: long paths must stay whole when the output is piped or the terminal is narrow;
# no markup on stdout, so that paths such as "runs/[v2]/map.tif" print as they are
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, markup=False)
_python_showwarning = warnings.showwarning

DataArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Dataset folder, samples.csv or GeoTIFF scenes (default: the demo data)."),
]
ClassesOpt = Annotated[
    Path | None, typer.Option("--classes", help="Class scheme JSON for your own labels.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]
SplitModeOpt = Annotated[
    str,
    typer.Option(
        help="random (evaluation patches anywhere else) | blocks (training and evaluation "
        "patches in separate blocks of the scene, a buffer apart: neighbouring patches share "
        "context, which flatters a random split)"
    ),
]
BlockSizeOpt = Annotated[
    int | None, typer.Option(help="blocks: block side in pixels (default: 4 patches).")
]
BufferOpt = Annotated[
    int | None,
    typer.Option(
        help="blocks: pixels kept free between training and evaluation (default: 1 patch)."
    ),
]
S2OffsetOpt = Annotated[
    float | None,
    typer.Option(
        "--s2-offset",
        help="Added to S2 values of files that do not state their offset (bare GeoTIFFs): "
        "-1000 for GeoTIFFs cut from processing baseline 04.00+ products (from 25 Jan 2022) "
        "without correction. Default 0. .SAFE products and STAC items use their own metadata.",
    ),
]
S2BandsOpt = Annotated[
    str,
    typer.Option(
        help="S2 bands fed to the network: 'all' (every band the data has but the cirrus band "
        "B10) or a list, e.g. the paper's B2,B3,B4,B8."
    ),
]


def _data(data: list[Path] | None):
    if not data:
        return None
    return data[0] if len(data) == 1 else data


def _csv_ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SarfuseError(None, f"{what} must be comma-separated integers, got {text!r}") from None


def _check_split_mode(mode: str) -> None:
    if mode not in ("random", "blocks"):
        raise SarfuseError(None, f"--split-mode must be random or blocks, got {mode!r}")


def _csv_words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _close_progress_bars() -> None:
    """Close the bars an error interrupted, so that the error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.close()


_DEBUG = {"on": False}  # --debug: let exceptions through with their traceback


def friendly(fn):
    """Turn library errors into one red line and exit code 2 (130 for an interruption).

    Nothing prints a traceback without ``--debug``: an unexpected exception is one line too.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Interrupted as exc:
            _fail(f"[yellow]interrupted[/]: {escape(str(exc))}", 130)
        except KeyboardInterrupt:
            _fail("[yellow]interrupted[/]: no half-written file is left; rerun to finish", 130)
        except SarfuseError as exc:
            _fail(f"[bold red]error:[/] {escape(str(exc))}", 2)
        except OSError as exc:  # a file system refusal the library did not name itself
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", 2)
        except Exception as exc:
            if _DEBUG["on"]:
                raise
            text = " ".join(str(exc).split())[:300]
            _fail(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(text)} "
                "(rerun with --debug for the traceback)",
                1,
            )

    return wrapper


class _ConsoleLog(logging.Handler):
    """Log records as plain lines on stderr (whole paths, never wrapped), above progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _show_sarfuse_log() -> None:
    """sarfuse's own notes (S1 units chosen, S2 product offsets, automatic fusion) on stderr."""
    logger = logging.getLogger("sarfuse")
    if not any(isinstance(h, _ConsoleLog) for h in logger.handlers):
        logger.addHandler(_ConsoleLog())
        logger.setLevel(logging.INFO)


def _fail(message: str, code: int):
    """Print one line (the traceback too with ``--debug``) and exit with ``code``."""
    _close_progress_bars()
    if _DEBUG["on"]:
        console.print_exception()
    console.print(message, highlight=False)
    raise typer.Exit(code) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Every warning is one yellow line (a library's names its category); with ``--debug``
    others keep Python's format, with the source line."""
    if _DEBUG["on"] and not issubclass(category, SarfuseWarning):
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    _close_progress_bars()
    kind = "" if issubclass(category, SarfuseWarning) else f"{category.__name__}: "
    text = " ".join(str(message).split())
    console.print(f"[yellow]warning:[/] {escape(kind + text)}", highlight=False)


def _quiet_unraisable(report) -> None:
    """An exception a C library's callback could not raise (say, GDAL logging undecodable bytes
    of a damaged file) is no concern of the user's; ``--debug`` shows it."""
    if _DEBUG["on"]:
        sys.__unraisablehook__(report)


def _quiet_libraries() -> None:
    """Keep the terminal for sarfuse's own progress: no library warnings of no use to a user."""
    warnings.filterwarnings("ignore", message=".*weights_only.*")
    # a file without a CRS or transform is reported once by the data check, in its own words
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    warnings.showwarning = _show_warning
    sys.unraisablehook = _quiet_unraisable


def _version(value: bool) -> None:
    if value:
        out.print(f"sarfuse {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
) -> None:
    """Self-supervised SAR-optical fusion and land-cover mapping (Chen & Bruzzone, TGRS 2022)."""
    _DEBUG["on"] = debug
    _quiet_libraries()
    _show_sarfuse_log()


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    size: Annotated[int, typer.Option(help="Scene side in pixels (10 m).")] = 1024,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    layout: Annotated[str, typer.Option(help="dfc2020 (256x256 patches) or scene.")] = "dfc2020",
    clouds: Annotated[bool, typer.Option(help="Add clouds and shadows to S2.")] = True,
) -> None:
    """Generate a realistic synthetic, georeferenced S1+S2+label dataset."""
    from sarfuse.data.synth import generate

    if layout not in ("dfc2020", "scene"):
        raise SarfuseError(None, f"--layout must be dfc2020 or scene, got {layout!r}")
    path = generate(out_dir, size=size, seed=seed, layout=layout, clouds=clouds)
    out.print(f"wrote a {size}x{size} synthetic dataset ({layout} layout) to {path}")


@app.command()
@friendly
def stats(
    data: DataArg = None,
    out_file: Annotated[Path, typer.Option("--out", help="JSON file to write.")] = Path(
        "stats.json"
    ),
    s2_bands: Annotated[
        str, typer.Option(help="S2 bands to describe (default: every band the data has).")
    ] = "",
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Per-band mean and std over a dataset (valid pixels only), for normalisation."""
    from sarfuse.data.normalise import compute_stats, save_stats
    from sarfuse.runtime import resolve_source

    source = resolve_source(_data(data), s2_offset=s2_offset, labels=False)
    bands = tuple(_csv_words(s2_bands)) or source.s2_bands()
    result = compute_stats(source, s2_bands=bands or ("B2",))
    save_stats(result, out_file)
    out.print(f"statistics of {len(source.samples)} scenes written to {out_file}")


@app.command()
@friendly
def superpixels(
    data: DataArg = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    patch_size: Annotated[int, typer.Option(help="Patch side in pixels.")] = 256,
    scale: Annotated[float, typer.Option(help="Felzenszwalb scale.")] = 200.0,
    sigma: Annotated[float, typer.Option(help="Felzenszwalb sigma.")] = 0.5,
    min_size: Annotated[int, typer.Option(help="Felzenszwalb min_size.")] = 30,
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Compute (and cache) Felzenszwalb superpixels of every patch, in parallel."""
    from dataclasses import replace

    from sarfuse.contract import DataContract
    from sarfuse.runtime import resolve_source
    from sarfuse.ssl.config import PretrainConfig
    from sarfuse.superpixels import compute_all

    source = resolve_source(_data(data), s2_offset=s2_offset, labels=False)
    cfg = replace(PretrainConfig(), patch_size=patch_size, sp_scales=(scale,), sp_sigma=sigma,
                  sp_min_size=min_size, stats=None)  # fmt: skip
    contract = DataContract.for_pretraining(source, cfg)
    result = compute_all(contract.open_patches(source, superpixels=True), workers=workers)
    out.print(
        f"superpixels: {result['computed']} computed, {result['cached']} from cache "
        f"in {result['seconds']:.1f} s"
    )


def _scale_out(cfg, devices: str | None, nodes: int | None, strategy: str | None,
               precision: str | None) -> None:  # fmt: skip
    """Set where a run trains (given options only: a resumed run keeps its own otherwise)."""
    if devices is not None:
        if devices != "auto" and not devices.isdigit():
            raise SarfuseError(None, f"--devices takes a number or auto, got {devices!r}")
        cfg.devices = devices if devices == "auto" else int(devices)
    from typing import get_args

    from sarfuse.ssl.config import Precision

    if precision is not None and precision not in get_args(Precision):
        choices = " | ".join(get_args(Precision))
        raise SarfuseError(None, f"--precision takes {choices}, got {precision!r}")
    for name, value in (("num_nodes", nodes), ("strategy", strategy), ("precision", precision)):
        if value is not None:
            setattr(cfg, name, value)


@app.command()
@friendly
def pretrain(
    data: DataArg = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run folder (checkpoint, config, loss curve).")
    ] = Path("runs/pretrain"),
    fusion: Annotated[
        str,
        typer.Option(
            help="auto (intermediate with S1 + S2, early with one sensor) | early | intermediate "
            "| late"
        ),
    ] = "auto",
    method: Annotated[
        str, typer.Option(help="pixel (the paper's) | mcl | dcca | dcca_image (the authors' DCCA)")
    ] = "pixel",
    epochs: Annotated[int | None, typer.Option(help="Epochs (default from the config).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps (overrides --epochs).")] = None,
    crop: Annotated[int, typer.Option(help="View size in pixels.")] = 32,
    batch: Annotated[int, typer.Option(help="Views per step.")] = 32,
    width: Annotated[int, typer.Option(help="ResUnet base width (paper: 64).")] = 16,
    feat_dim: Annotated[int, typer.Option(help="Feature size per pixel.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-4,
    patch_size: Annotated[
        int, typer.Option(help="Scenes are cut into patches of this size.")
    ] = 256,
    stats_file: Annotated[
        Path | None, typer.Option("--stats", help="Statistics JSON from `sarfuse stats`.")
    ] = None,
    ema: Annotated[float, typer.Option(help="EMA teacher momentum (0 = off).")] = 0.0,
    w_cross: Annotated[
        float | None, typer.Option(help="Weight of the in-view S1-vs-S2 image term (pixel).")
    ] = None,
    projection: Annotated[
        bool | None, typer.Option(help="Projection head before the superpixel contrast (pixel).")
    ] = None,
    s2_bands: S2BandsOpt = "all",
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from last.ckpt.")] = False,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    s2_offset: S2OffsetOpt = None,
    ckpt_every: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps (a kill loses at most N).")
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="Devices per node: a number, or auto (every GPU / one CPU).")
    ] = None,
    num_nodes: Annotated[
        int | None, typer.Option(help="Machines (launched by torchrun or SLURM); default 1.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Lightning strategy: auto (DDP on several devices) | ddp.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="32-true (default) | bf16-mixed | 16-mixed (Lightning).")
    ] = None,
) -> None:
    """Self-supervised pretraining of a fusion network (no labels needed).

    Several GPUs or machines: --devices N --num-nodes M --strategy ddp (README: clusters)."""
    from sarfuse.runtime import quiet_lightning
    from sarfuse.ssl.config import PretrainConfig
    from sarfuse.ssl.train import pretrain as run

    quiet_lightning()

    if resume and (out_dir / "config.json").exists():
        cfg = PretrainConfig.from_dict(json.loads((out_dir / "config.json").read_text()))
        cfg.device = device
    else:
        cfg = PretrainConfig(
            fusion=fusion,
            method=method,
            crop=crop,
            batch=batch,
            width=width,
            feat_dim=feat_dim,
            lr=lr,
            patch_size=patch_size,
            stats=str(stats_file) if stats_file else None,
            ema=ema,
            s2_bands=tuple(_csv_words(s2_bands)),
            device=device,
            seed=seed,
            workers=workers,
            s2_offset=s2_offset,
        )
        if epochs is not None:
            cfg.epochs = epochs
        if w_cross is not None:
            cfg.w_cross = w_cross
        if projection is not None:
            cfg.projection = projection
    if steps is not None:
        cfg.steps = steps
    if ckpt_every is not None:
        cfg.ckpt_every = ckpt_every
    _scale_out(cfg, devices, num_nodes, strategy, precision)
    result = run(_data(data), out_dir, cfg, resume=resume)
    chosen = " (fusion auto: chosen from the data's sensors)" if cfg.fusion == "auto" else ""
    out.print(
        f"pretrained {result.config.fusion}/{cfg.method} for {result.steps} steps{chosen}; loss "
        f"{result.first_loss:.3f} -> {result.last_loss:.3f}\n"
        f"checkpoint: {result.checkpoint}\nloss curve: {out_dir / 'loss.png'}"
    )


@app.command()
@friendly
def probe(
    data: DataArg = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Pretraining checkpoint (RUN_DIR/last.ckpt).")
    ] = None,
    labels: Annotated[int, typer.Option(help="Number of labelled patches.")] = 10,
    out_dir: Annotated[Path, typer.Option("--out", help="Probe folder.")] = Path("runs/probe"),
    patch_size: Annotated[int, typer.Option(help="Patch side; N counts these patches.")] = 64,
    features: Annotated[
        str,
        typer.Option(
            help="auto (chosen by cross-validation over the labelled patches among raw, pretrained "
            "and pretrained+raw) | pretrained | pretrained+raw | random | raw | supervised (a "
            "network trained from scratch on the labelled patches only)"
        ),
    ] = "auto",
    classifier: Annotated[
        str, typer.Option(help="auto (by the same cross-validation) | linear | rf")
    ] = "auto",
    self_train: Annotated[
        bool,
        typer.Option(
            "--self-train/--no-self-train",
            help="Pseudo labels from the scheme's index rules, then self-training on unlabelled "
            "patches (never the evaluation patches).",
        ),
    ] = False,
    indices: Annotated[
        str, typer.Option(help="Spectral indices appended to the features.")
    ] = "mean_sar,ndvi,ndwi,dbsi",
    epochs: Annotated[int, typer.Option(help="Linear probe epochs.")] = 50,
    supervised_steps: Annotated[
        int | None,
        typer.Option(help="Steps of the --features supervised network (default from the config)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the classifier.")] = 0,
    n_eval: Annotated[int | None, typer.Option(help="Fixed number of evaluation patches.")] = None,
    classes: ClassesOpt = None,
    split_mode: SplitModeOpt = "random",
    block_size: BlockSizeOpt = None,
    buffer: BufferOpt = None,
    split: Annotated[
        Path | None,
        typer.Option(
            help="Reuse a saved split (PROBE_DIR/split.json of another run, e.g. of other "
            "features): the same patches, matched by file and window."
        ),
    ] = None,
    device: DeviceOpt = "auto",
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Train a linear (or random-forest) classifier on few labelled patches and evaluate it."""
    from typing import get_args

    from sarfuse.lock import output_lock
    from sarfuse.mapping.features import NEEDS_CHECKPOINT, FeatureKind
    from sarfuse.mapping.metrics import format_table
    from sarfuse.mapping.workflow import ProbeConfig, run_probe
    from sarfuse.runtime import resolve_source, torch_device

    kinds = ("auto", *get_args(FeatureKind))
    if features not in kinds or classifier not in ("auto", "linear", "rf"):
        raise SarfuseError(
            None, f"--features must be {'|'.join(kinds)} and --classifier auto|linear|rf"
        )
    _check_split_mode(split_mode)
    if features in NEEDS_CHECKPOINT and checkpoint is None:
        raise SarfuseError(
            None, f"--features {features} needs --checkpoint (or use --features raw)"
        )
    cfg = ProbeConfig(
        labels=labels,
        patch_size=patch_size,
        seed=seed,
        features=features,
        classifier=classifier,
        indices=tuple(_csv_words(indices)),
        epochs=epochs,
        n_eval=n_eval,
        self_train=self_train,
        split_mode=split_mode,  # type: ignore[arg-type]
        block_size=block_size,
        buffer=buffer,
        split_file=str(split) if split else None,
        device=torch_device(device),
        s2_offset=s2_offset,
    )
    if supervised_steps is not None:
        cfg.supervised_steps = supervised_steps
    source = resolve_source(_data(data), classes, cfg.s2_offset)
    with output_lock(out_dir):
        result = run_probe(source, out_dir, cfg, checkpoint)
    out.print(format_table(result))
    out.print(f"metrics: {out_dir / 'metrics.json'}\nconfusion matrix: {out_dir / 'confusion.png'}")


@app.command("map")
@friendly
def map_cmd(
    probe_dir: Annotated[Path, typer.Option("--probe", help="Folder written by `sarfuse probe`.")],
    out_file: Annotated[Path, typer.Option("--out", help="Output GeoTIFF.")],
    s1: Annotated[
        Path | None, typer.Option(help="Sentinel-1 scene (VV, VH): a GeoTIFF or a STAC item JSON.")
    ] = None,
    s2: Annotated[
        Path | None,
        typer.Option(
            help="Sentinel-2 scene: a GeoTIFF, a .SAFE product (folder or zip) or a STAC item JSON."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint (default: the probe's).")
    ] = None,
    tile: Annotated[int, typer.Option(help="Tile side in pixels.")] = MapConfig.tile,
    overlap: Annotated[
        int, typer.Option(help="Overlap of neighbouring tiles.")
    ] = MapConfig.overlap,
    probabilities: Annotated[
        bool, typer.Option(help="Also write class probabilities (float32, a band per class).")
    ] = False,
    cog: Annotated[
        bool, typer.Option(help="Write Cloud Optimized GeoTIFFs with overviews.")
    ] = True,
    batch_tiles: Annotated[
        int, typer.Option(help="Tiles per forward pass (more suits a GPU; memory grows).")
    ] = MapConfig.batch_tiles,
    device: DeviceOpt = "auto",
    s2_offset: S2OffsetOpt = None,
) -> None:
    """Map a whole scene of any size to a coloured, georeferenced GeoTIFF (and a PNG).

    Beside the map: MAP.tif.aux.xml (class names GDAL reads) and MAP.qml (the QGIS style).
    """
    from sarfuse.mapping.scene import map_files
    from sarfuse.runtime import torch_device

    result = map_files(
        probe_dir,
        out_file,
        s1=s1,
        s2=s2,
        checkpoint=checkpoint,
        config=MapConfig(tile, overlap, batch_tiles),
        probabilities=probabilities,
        device=torch_device(device),
        cog=cog,
        s2_offset=s2_offset,
    )
    out.print(
        f"map: {result['path']} ({result['tiles']} tiles)\nquicklook: {result['quicklook']}\n"
        f"QGIS style: {result['style']}"
    )


@app.command()
@friendly
def export(
    probe_dir: Annotated[Path, typer.Option("--probe", help="Folder written by `sarfuse probe`.")],
    out_file: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint (default: the probe's).")
    ] = None,
    tile: Annotated[
        int, typer.Option(help="Input tile side in pixels (fixed in the graph).")
    ] = EXPORT_TILING.tile,
    overlap: Annotated[
        int, typer.Option(help="Suggested overlap of tiles, in pixels.")
    ] = EXPORT_TILING.overlap,
) -> None:
    """Export network + normalisation + linear probe as one ONNX graph (QGIS Deepness ready)."""
    from sarfuse.export import export_onnx

    result = export_onnx(probe_dir, out_file, checkpoint, MapConfig(tile, overlap))
    out.print(
        f"model: {result['path']}\ninput 'bands' (1, {len(result['inputs'])}, {tile}, {tile}): "
        f"{', '.join(result['inputs'])}\noutput 'probabilities': {', '.join(result['classes'])}"
    )


@app.command("map-many")
@friendly
def map_many_cmd(
    probe_dir: Annotated[Path, typer.Option("--probe", help="Folder written by `sarfuse probe`.")],
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
    device: DeviceOpt = "auto",
) -> None:
    """Map many scenes with one probe: over --workers processes, and machines with --shard."""
    from sarfuse.mapping.many import map_many, parse_shard, scene_list
    from sarfuse.runtime import torch_device

    todo = scene_list(scenes, parse_shard(shard))
    options = {"config": MapConfig(tile, overlap), "device": torch_device(device)}
    for done, (sample, result) in enumerate(map_many(probe_dir, todo, out_dir, workers,
                                                     **options), 1):  # fmt: skip
        state = "exists, skipped" if result is None else f"{result['tiles']} tiles"
        out.print(f"[{done}/{len(todo)}] {sample.name}: {out_dir / sample.name}.tif ({state})")


@app.command()
@friendly
def experiment(
    data: DataArg = None,
    labels: Annotated[str, typer.Option(help="Labelled patch counts.")] = "10,50",
    fusion: Annotated[str, typer.Option(help="Fusions to compare.")] = "early,intermediate,late",
    methods: Annotated[str, typer.Option(help="Methods to compare.")] = "pixel,mcl,dcca",
    seeds: Annotated[str, typer.Option(help="Seeds (splits and probes).")] = "0,1,2",
    out_dir: Annotated[Path, typer.Option("--out", help="Experiment folder.")] = Path(
        "runs/experiment"
    ),
    steps: Annotated[int, typer.Option(help="Pretraining steps per model.")] = 150,
    s2_bands: S2BandsOpt = "all",
    patch_size: Annotated[int, typer.Option(help="Patch side for the probe.")] = 64,
    n_eval: Annotated[int | None, typer.Option(help="Fixed evaluation patches.")] = None,
    split_mode: SplitModeOpt = "random",
    block_size: BlockSizeOpt = None,
    buffer: BufferOpt = None,
    classes: ClassesOpt = None,
    device: DeviceOpt = "auto",
    s2_offset: S2OffsetOpt = None,
) -> None:
    """The paper's experiment: mIoU against labelled patches for each fusion and method."""
    from sarfuse.experiment import run_experiment

    _check_split_mode(split_mode)
    from sarfuse.mapping.workflow import ProbeConfig
    from sarfuse.runtime import quiet_lightning, torch_device
    from sarfuse.ssl.config import PretrainConfig

    quiet_lightning()

    run_experiment(
        _data(data),
        out_dir,
        _csv_ints(labels, "--labels"),
        _csv_words(fusion),
        _csv_words(methods),
        _csv_ints(seeds, "--seeds"),
        PretrainConfig(
            steps=steps, device=device, s2_bands=tuple(_csv_words(s2_bands)), s2_offset=s2_offset
        ),
        ProbeConfig(
            patch_size=patch_size,
            device=torch_device(device),
            s2_offset=s2_offset,
            split_mode=split_mode,  # type: ignore[arg-type]
            block_size=block_size,
            buffer=buffer,
        ),
        n_eval=n_eval,
        console=console,
        classes=classes,
    )
    out.print(
        f"results: {out_dir / 'results.csv'}\nsummary: {out_dir / 'summary.md'}\n"
        f"figure: {out_dir / 'miou_vs_labels.png'}"
    )
    out.print((out_dir / "summary.md").read_text())


@app.command()
@friendly
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where to write the demo's outputs.")
    ] = Path("demo_out"),
    steps: Annotated[int, typer.Option(help="Pretraining steps.")] = 150,
    device: DeviceOpt = "auto",
) -> None:
    """Run the whole chain on the embedded demo data and say where everything is."""
    from sarfuse.demo import run_demo
    from sarfuse.runtime import quiet_lightning

    quiet_lightning()

    summary = run_demo(out_dir, steps=steps, device=device, console=console)
    out.print(f"\ndemo finished in {summary['seconds']} s", style="bold green")
    out.print(
        f"  map:        {summary['map']}\n  quicklook:  {summary['quicklook']}\n"
        f"  metrics:    {summary['metrics']}\n  confusion:  {summary['confusion']}\n"
        f"  loss curve: {summary['loss_curve']}\n  checkpoint: {summary['checkpoint']}"
    )
