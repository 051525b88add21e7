"""``sarfuse pretrain``: self-supervised pretraining, its options read from ``PretrainConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

import sarfuse.cli.options as o
from sarfuse.cli.app import app, friendly, out
from sarfuse.errors import SarfuseError
from sarfuse.models.fusion import FUSIONS
from sarfuse.ssl.config import Precision, PretrainConfig
from sarfuse.ssl.methods import METHODS

FUSION_CHOICES = (o.AUTO, *FUSIONS)
OPT = o.field_options(
    PretrainConfig,
    choices={"fusion": FUSION_CHOICES, "method": tuple(METHODS), "precision": get_args(Precision)},
    flags={"stats": ("--stats",)},
)
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from last.ckpt.")]
PretrainOut = Annotated[
    Path, typer.Option("--out", help="Run folder (checkpoint, config, loss curve).")
]


def pretrain_config(options: dict) -> PretrainConfig:
    """The config a ``sarfuse pretrain`` runs with: a resumed run's own, else the dataclass's
    defaults < ``--config`` < the options given."""
    from sarfuse.runconfig import resume_config

    resumed = options["resume"] and resume_config(
        options["out_dir"], o.given(PretrainConfig, options)
    )
    if resumed and options["config"] is not None:
        raise SarfuseError(options["config"], "--resume keeps the run's own config.json")
    cfg = resumed or o.layered(PretrainConfig(), options["config"], options)
    if isinstance(cfg.devices, str) and cfg.devices != o.AUTO:
        raise SarfuseError(None, f"--devices takes a number or auto, got {cfg.devices!r}")
    o.check_choice("--fusion", cfg.fusion, FUSION_CHOICES)
    o.check_choice("--method", cfg.method, tuple(METHODS))
    o.check_choice("--precision", cfg.precision, get_args(Precision))
    return cfg


@app.command()
@friendly
@o.takes(
    OPT,
    "fusion method epochs steps crop batch width feat_dim lr patch_size stats ema w_cross "
    "projection s2_bands seed workers ckpt_every devices num_nodes strategy precision",
)
def pretrain(
    data: o.DataArg = None,
    out_dir: PretrainOut = Path("runs/pretrain"),
    config: o.ConfigOpt = None,
    resume: Resume = False,
    device: o.DeviceOpt = None,
    s2_offset: o.S2OffsetOpt = None,
    **fields,
) -> None:
    """Self-supervised pretraining of a fusion network (no labels needed).

    Several GPUs or machines: --devices N --num-nodes M --strategy ddp (README: clusters)."""
    from sarfuse.runtime import quiet_lightning
    from sarfuse.ssl.train import pretrain as run

    cfg = pretrain_config({**locals(), **fields})
    quiet_lightning()
    result = run(o.data_arg(data), out_dir, cfg, resume=resume)
    chosen = " (fusion auto: chosen from the data's sensors)" if cfg.fusion == o.AUTO else ""
    out.print(
        f"pretrained {result.config.fusion}/{cfg.method} for {result.steps} steps{chosen}; loss "
        f"{result.first_loss:.3f} -> {result.last_loss:.3f}\n"
        f"checkpoint: {result.checkpoint}\nloss curve: {out_dir / 'loss.png'}"
    )
