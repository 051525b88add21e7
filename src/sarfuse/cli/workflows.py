"""Workflow commands: ``experiment`` (options read from ``ExperimentConfig``) and ``demo``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

import sarfuse.cli.options as o
from sarfuse.cli.app import app, console, friendly, out
from sarfuse.demo import DEMO_STEPS
from sarfuse.experiment import ExperimentConfig
from sarfuse.mapping.workflow import ProbeConfig
from sarfuse.models.fusion import FUSIONS
from sarfuse.runconfig import load_config
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import METHODS

# experiment options that set a field of its pretraining or probe config (the rest: its own)
ROUTES = {"steps": "pretrain", "s2_bands": "pretrain", "patch_size": "probe",
          "split_mode": "probe", "block_size": "probe", "buffer": "probe"}  # fmt: skip
_GRID = ExperimentConfig()
EXP = o.field_options(
    ExperimentConfig, {"fusions": tuple(FUSIONS), "methods": tuple(METHODS)},
    flags={"fusions": ("--fusion",)},
)  # fmt: skip
EXP_PRE = o.field_options(PretrainConfig, defaults=_GRID.pretrain)
EXP_PROBE = o.field_options(ProbeConfig, {"split_mode": o.split_modes()}, defaults=_GRID.probe)
ExperimentOut = Annotated[Path, typer.Option("--out", help="Experiment folder.")]


def experiment_config(options: dict) -> ExperimentConfig:
    """The dataclass's defaults < ``--config`` < the options given; ``--device`` and
    ``--s2-offset`` set both the pretraining and the probes."""
    from sarfuse.runtime import torch_device

    base = ExperimentConfig(probe=replace(ProbeConfig(), device=o.AUTO))
    cfg = base if options["config"] is None else load_config(options["config"], base)
    shared = {"device": options["device"], "s2_offset": options["s2_offset"]}
    part = {p: {**shared, **{k: v for k, v in options.items() if ROUTES.get(k) == p}}
            for p in ("pretrain", "probe")}  # fmt: skip
    cfg = replace(
        cfg, **o.given(ExperimentConfig, {k: v for k, v in options.items() if k not in ROUTES}),
        pretrain=replace(cfg.pretrain, **o.given(PretrainConfig, part["pretrain"])),
        probe=replace(cfg.probe, **o.given(ProbeConfig, part["probe"])),
    )  # fmt: skip
    o.check_choice("--split-mode", cfg.probe.split_mode, o.split_modes())
    return replace(cfg, probe=replace(cfg.probe, device=torch_device(cfg.probe.device)))


@app.command()
@friendly
@o.takes(EXP_PROBE, "patch_size split_mode block_size buffer")
@o.takes(EXP_PRE, "steps s2_bands")
@o.takes(EXP, "labels fusions methods seeds n_eval")
def experiment(
    data: o.DataArg = None,
    classes: o.ClassesOpt = None,
    s2_offset: o.S2OffsetOpt = None,
    out_dir: ExperimentOut = Path("runs/experiment"),
    config: o.ConfigOpt = None,
    device: o.DeviceOpt = None,
    **fields,
) -> None:
    """The paper's experiment: mIoU against labelled patches for each fusion and method (its
    folder keeps the settings it ran with in config.yaml, loadable by --config)."""
    from sarfuse.experiment import run_experiment_config
    from sarfuse.runtime import quiet_lightning

    cfg = experiment_config({**locals(), **fields})
    quiet_lightning()
    run_experiment_config(o.data_arg(data), out_dir, cfg, console=console, classes=classes)
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
    steps: Annotated[int, typer.Option(help="Pretraining steps.")] = DEMO_STEPS,
    device: o.DeviceOpt = None,
) -> None:
    """Run the whole chain on the embedded demo data and say where everything is."""
    from sarfuse.demo import run_demo
    from sarfuse.runtime import quiet_lightning

    quiet_lightning()
    summary = run_demo(out_dir, steps=steps, device=device or o.AUTO, console=console)
    out.print(f"\ndemo finished in {summary['seconds']} s", style="bold green")
    out.print(
        f"  map:        {summary['map']}\n  quicklook:  {summary['quicklook']}\n"
        f"  metrics:    {summary['metrics']}\n  confusion:  {summary['confusion']}\n"
        f"  loss curve: {summary['loss_curve']}\n  checkpoint: {summary['checkpoint']}"
    )
