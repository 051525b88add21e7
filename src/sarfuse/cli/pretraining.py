"""``sarfuse pretrain``: self-supervised pretraining, its options read from ``PretrainConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from sarfuse.cli.app import app, friendly, out
from sarfuse.cli.options import (
    AUTO,
    S2_BANDS_HELP,
    ConfigOpt,
    DataArg,
    DeviceOpt,
    S2OffsetOpt,
    check_choice,
    csv_words,
    data_arg,
    field_option,
    layered,
)
from sarfuse.errors import SarfuseError
from sarfuse.models.fusion import FUSIONS
from sarfuse.ssl.config import Precision, PretrainConfig
from sarfuse.ssl.methods import METHODS

P = PretrainConfig
FUSION_CHOICES = (AUTO, *FUSIONS)
FUSION_HELP = f"{AUTO} (intermediate with S1 + S2, early with one sensor) | {' | '.join(FUSIONS)}"

Fusion = Annotated[str | None, field_option(P, "fusion", FUSION_HELP)]
Method = Annotated[str | None, field_option(P, "method", " | ".join(METHODS))]
Epochs = Annotated[int | None, field_option(P, "epochs", "Epochs.")]
Steps = Annotated[int | None, field_option(P, "steps", "Optimiser steps (overrides --epochs).")]
Crop = Annotated[int | None, field_option(P, "crop", "View size in pixels.")]
Batch = Annotated[int | None, field_option(P, "batch", "Views per step.")]
Width = Annotated[int | None, field_option(P, "width", "ResUnet base width (paper: 64).")]
FeatDim = Annotated[int | None, field_option(P, "feat_dim", "Feature size per pixel.")]
Lr = Annotated[float | None, field_option(P, "lr", "Adam learning rate.")]
PatchSize = Annotated[
    int | None, field_option(P, "patch_size", "Scenes are cut into patches of this size.")
]
Stats = Annotated[str | None, field_option(P, "stats", "Statistics JSON from `sarfuse stats`.")]
Ema = Annotated[float | None, field_option(P, "ema", "EMA teacher momentum (0 = off).")]
WCross = Annotated[
    float | None, field_option(P, "w_cross", "Weight of the in-view S1-vs-S2 image term (pixel).")
]
Projection = Annotated[
    bool | None,
    field_option(P, "projection", "Projection head before the superpixel contrast (pixel)."),
]
S2Bands = Annotated[str | None, field_option(P, "s2_bands", S2_BANDS_HELP)]
Seed = Annotated[int | None, field_option(P, "seed", "Random seed.")]
Workers = Annotated[int | None, field_option(P, "workers", "DataLoader worker processes.")]
CkptEvery = Annotated[
    int | None, field_option(P, "ckpt_every", "Checkpoint every N steps (a kill loses at most N).")
]
Devices = Annotated[
    str | None,
    field_option(P, "devices", "Devices per node: a number, or auto (every GPU / one CPU)."),
]
NumNodes = Annotated[
    int | None, field_option(P, "num_nodes", "Machines (launched by torchrun or SLURM).")
]
Strategy = Annotated[
    str | None, field_option(P, "strategy", "Lightning strategy: auto (DDP on several devices).")
]
PrecisionOpt = Annotated[
    str | None, field_option(P, "precision", f"{' | '.join(get_args(Precision))} (Lightning).")
]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from last.ckpt.")]
PretrainOut = Annotated[
    Path, typer.Option("--out", help="Run folder (checkpoint, config, loss curve).")
]


def _devices(text: str | None) -> int | str | None:
    if text is None or text == AUTO:
        return text
    if not text.isdigit():
        raise SarfuseError(None, f"--devices takes a number or auto, got {text!r}")
    return int(text)


def pretrain_config(options: dict) -> PretrainConfig:
    """The config a ``sarfuse pretrain`` runs with: a resumed run's own, else the dataclass's
    defaults < ``--config`` < the options given."""
    from sarfuse.runconfig import resume_config

    options = {**options, "s2_bands": csv_words(options["s2_bands"])}
    options["devices"] = _devices(options["devices"])
    resumed = options["resume"] and resume_config(options["out_dir"], options_given(options))
    if resumed:
        if options["config"] is not None:
            raise SarfuseError(options["config"], "--resume keeps the run's own config.json")
        cfg = resumed
    else:
        cfg = layered(PretrainConfig(), options["config"], options)
    for flag, value, choices in (
        ("--fusion", cfg.fusion, FUSION_CHOICES),
        ("--method", cfg.method, tuple(METHODS)),
        ("--precision", cfg.precision, get_args(Precision)),
    ):
        check_choice(flag, value, choices)
    return cfg


def options_given(options: dict) -> dict:
    return {k: v for k, v in options.items() if v is not None}


@app.command()
@friendly
def pretrain(
    data: DataArg = None,
    out_dir: PretrainOut = Path("runs/pretrain"),
    config: ConfigOpt = None,
    fusion: Fusion = None,
    method: Method = None,
    epochs: Epochs = None,
    steps: Steps = None,
    crop: Crop = None,
    batch: Batch = None,
    width: Width = None,
    feat_dim: FeatDim = None,
    lr: Lr = None,
    patch_size: PatchSize = None,
    stats: Stats = None,
    ema: Ema = None,
    w_cross: WCross = None,
    projection: Projection = None,
    s2_bands: S2Bands = None,
    device: DeviceOpt = None,
    seed: Seed = None,
    resume: Resume = False,
    workers: Workers = None,
    s2_offset: S2OffsetOpt = None,
    ckpt_every: CkptEvery = None,
    devices: Devices = None,
    num_nodes: NumNodes = None,
    strategy: Strategy = None,
    precision: PrecisionOpt = None,
) -> None:
    """Self-supervised pretraining of a fusion network (no labels needed).

    Several GPUs or machines: --devices N --num-nodes M --strategy ddp (README: clusters)."""
    from sarfuse.runtime import quiet_lightning
    from sarfuse.ssl.train import pretrain as run

    cfg = pretrain_config(dict(locals()))
    quiet_lightning()
    result = run(data_arg(data), out_dir, cfg, resume=resume)
    chosen = " (fusion auto: chosen from the data's sensors)" if cfg.fusion == AUTO else ""
    out.print(
        f"pretrained {result.config.fusion}/{cfg.method} for {result.steps} steps{chosen}; loss "
        f"{result.first_loss:.3f} -> {result.last_loss:.3f}\n"
        f"checkpoint: {result.checkpoint}\nloss curve: {out_dir / 'loss.png'}"
    )
