"""Workflow commands: ``experiment`` (options read from ``ExperimentConfig``) and ``demo``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from sarfuse.cli.app import app, console, friendly, out
from sarfuse.cli.options import (
    AUTO,
    BLOCK_SIZE_HELP,
    BUFFER_HELP,
    S2_BANDS_HELP,
    SPLIT_MODE_HELP,
    ClassesOpt,
    ConfigOpt,
    DataArg,
    DeviceOpt,
    S2OffsetOpt,
    check_choice,
    csv_ints,
    csv_words,
    data_arg,
    default_note,
    field_option,
    given,
    split_modes,
)
from sarfuse.demo import DEMO_STEPS
from sarfuse.experiment import ExperimentConfig
from sarfuse.mapping.workflow import ProbeConfig
from sarfuse.models.fusion import FUSIONS
from sarfuse.runconfig import load_config
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import METHODS

E, P, Q = ExperimentConfig, PretrainConfig, ProbeConfig
# experiment options that set a field of its pretraining or probe config (the rest: its own)
ROUTES = {"steps": "pretrain", "s2_bands": "pretrain", "patch_size": "probe",
          "split_mode": "probe", "block_size": "probe", "buffer": "probe"}  # fmt: skip

Labels = Annotated[str | None, field_option(E, "labels", "Labelled patch counts.")]
Fusions = Annotated[
    str | None, field_option(E, "fusions", f"Fusions to compare: {', '.join(FUSIONS)}.", "--fusion")
]
Methods = Annotated[
    str | None, field_option(E, "methods", f"Methods to compare: {', '.join(METHODS)}.")
]
Seeds = Annotated[str | None, field_option(E, "seeds", "Seeds (splits and probes).")]
ExperimentOut = Annotated[Path, typer.Option("--out", help="Experiment folder.")]
Steps = Annotated[
    int | None,
    typer.Option(help="Pretraining steps per model." + default_note(E().pretrain.steps)),
]
S2Bands = Annotated[str | None, field_option(P, "s2_bands", S2_BANDS_HELP)]
PatchSize = Annotated[int | None, field_option(Q, "patch_size", "Patch side for the probe.")]
NEval = Annotated[int | None, field_option(E, "n_eval", "Fixed evaluation patches.")]
SplitModeOpt = Annotated[str | None, field_option(Q, "split_mode", SPLIT_MODE_HELP)]
BlockSize = Annotated[int | None, field_option(Q, "block_size", BLOCK_SIZE_HELP)]
Buffer = Annotated[int | None, field_option(Q, "buffer", BUFFER_HELP)]


def experiment_config(options: dict) -> ExperimentConfig:
    """The dataclass's defaults < ``--config`` < the options given; ``--device`` and
    ``--s2-offset`` set both the pretraining and the probes."""
    from sarfuse.runtime import torch_device

    options = {**options, "labels": csv_ints(options["labels"], "--labels"),
               "seeds": csv_ints(options["seeds"], "--seeds"),
               "fusions": csv_words(options["fusions"]), "methods": csv_words(options["methods"]),
               "s2_bands": csv_words(options["s2_bands"])}  # fmt: skip
    base = ExperimentConfig(probe=replace(ProbeConfig(), device=AUTO))
    cfg = base if options["config"] is None else load_config(options["config"], base)
    shared = given(PretrainConfig, {"device": options["device"], "s2_offset": options["s2_offset"]})
    parts = {part: {**shared, **{k: v for k, v in options.items() if ROUTES.get(k) == part}}
             for part in ("pretrain", "probe")}  # fmt: skip
    cfg = replace(
        cfg, **given(ExperimentConfig, {k: v for k, v in options.items() if k not in ROUTES}),
        pretrain=replace(cfg.pretrain, **given(PretrainConfig, parts["pretrain"])),
        probe=replace(cfg.probe, **given(ProbeConfig, parts["probe"])),
    )  # fmt: skip
    check_choice("--split-mode", cfg.probe.split_mode, split_modes())
    return replace(cfg, probe=replace(cfg.probe, device=torch_device(cfg.probe.device)))


@app.command()
@friendly
def experiment(
    data: DataArg = None,
    labels: Labels = None,
    fusions: Fusions = None,
    methods: Methods = None,
    seeds: Seeds = None,
    out_dir: ExperimentOut = Path("runs/experiment"),
    config: ConfigOpt = None,
    steps: Steps = None,
    s2_bands: S2Bands = None,
    patch_size: PatchSize = None,
    n_eval: NEval = None,
    split_mode: SplitModeOpt = None,
    block_size: BlockSize = None,
    buffer: Buffer = None,
    classes: ClassesOpt = None,
    device: DeviceOpt = None,
    s2_offset: S2OffsetOpt = None,
) -> None:
    """The paper's experiment: mIoU against labelled patches for each fusion and method.

    The experiment folder keeps the settings it ran with in config.yaml (loadable by --config)."""
    from sarfuse.experiment import run_experiment_config
    from sarfuse.runtime import quiet_lightning

    cfg = experiment_config(dict(locals()))
    quiet_lightning()
    run_experiment_config(data_arg(data), out_dir, cfg, console=console, classes=classes)
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
    device: DeviceOpt = None,
) -> None:
    """Run the whole chain on the embedded demo data and say where everything is."""
    from sarfuse.demo import run_demo
    from sarfuse.runtime import quiet_lightning

    quiet_lightning()
    summary = run_demo(out_dir, steps=steps, device=device or AUTO, console=console)
    out.print(f"\ndemo finished in {summary['seconds']} s", style="bold green")
    out.print(
        f"  map:        {summary['map']}\n  quicklook:  {summary['quicklook']}\n"
        f"  metrics:    {summary['metrics']}\n  confusion:  {summary['confusion']}\n"
        f"  loss curve: {summary['loss_curve']}\n  checkpoint: {summary['checkpoint']}"
    )
