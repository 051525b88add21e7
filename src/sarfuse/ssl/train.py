"""``sarfuse pretrain``: self-supervised pretraining of a fusion network on unlabelled data."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from sarfuse.contract import DataContract
from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import DataSource
from sarfuse.errors import Interrupted, SarfuseError, warn
from sarfuse.io_utils import load_tensors
from sarfuse.lock import output_lock
from sarfuse.models.fusion import resolve_fusion
from sarfuse.runtime import accelerator, resolve_source
from sarfuse.ssl.callbacks import AtomicCheckpoint, LossLog
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.crops import CropBatchSampler, CropDataset
from sarfuse.ssl.methods import check_combination
from sarfuse.ssl.module import PretrainModule, context_size
from sarfuse.superpixels import compute_all

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    run_dir: Path
    checkpoint: Path
    steps: int
    first_loss: float | None
    last_loss: float | None
    config: PretrainConfig  # as trained: its fusion is resolved, never "auto"


def pretrain(
    data: str | Path | None,
    out: str | Path,
    config: PretrainConfig,
    resume: bool = False,
    progress: bool = True,
    classes: str | Path | None = None,
) -> PretrainResult:
    """Pretrain ``config.method`` with ``config.fusion`` on ``data`` (demo data when None).

    A fusion of ``auto`` is resolved from the data's sensors first, and the run folder, the
    checkpoint and the result record the resolved one. The run folder is locked for the run
    (a second run on it is refused); Ctrl-C raises :class:`Interrupted` saying how to resume.
    """
    check_settings(config)
    with output_lock(out):
        return _pretrain(data, Path(out), config, resume, progress, classes)


def check_settings(config: PretrainConfig) -> None:
    """One-line errors for sizes and counts that cannot train (``--batch 0`` and the like)."""
    sizes = {
        "--batch": config.batch,
        "--crop": config.crop,
        "--patch-size": config.patch_size,
        "--width": config.width,
        "--feat-dim": config.feat_dim,
        "--epochs": config.epochs,
        "--ckpt-every": config.ckpt_every,
    }
    if config.steps is not None:
        sizes["--steps"] = config.steps
    bad = [f"{name} {value}" for name, value in sizes.items() if value < 1]
    if bad:
        raise SarfuseError(None, f"{', '.join(bad)}: must be at least 1")
    if config.crop > config.patch_size:
        raise SarfuseError(
            None, f"--crop {config.crop} is larger than --patch-size {config.patch_size}"
        )


def _check_scene_sizes(patches: PatchDataset, crop: int, root: Path) -> None:
    """Scenes smaller than a training view give views of padding only: a constant loss and no
    superpixel term. Refuse when every scene is that small, warn when some are."""
    shapes = patches.scene_shapes
    small = [i for i, s in enumerate(shapes) if min(s) < crop]
    if not small:
        return
    h, w = shapes[min(small, key=lambda i: min(shapes[i]))]
    if len(small) == len(shapes):
        from sarfuse.data.validate import sample_file

        sample = patches.source.samples[0]
        raise SarfuseError(
            root if len(shapes) > 1 else sample_file(sample, patches.sensors[0]),
            f"every scene is smaller than a training view ({h}x{w} pixels, --crop {crop}): "
            "nothing to learn from; use larger scenes or a smaller --crop",
        )
    warn(root, f"{len(small)} scene(s) smaller than a training view ({h}x{w}, --crop {crop})")


def _pretrain(
    data: str | Path | None,
    run_dir: Path,
    config: PretrainConfig,
    resume: bool,
    progress: bool,
    classes: str | Path | None,
) -> PretrainResult:
    """:func:`pretrain` once its run folder is locked."""
    ckpt = run_dir / "last.ckpt"
    saved = _resume_point(ckpt) if _check_run_folder(ckpt, resume) else None
    source = resolve_source(data, classes, config.s2_offset, labels=False)
    config = _resolved(config, source.sensors)
    check_combination(config.fusion, config.method)
    contract = DataContract.for_pretraining(source, config)
    module = _module(config, contract)
    if saved is not None:
        _check_same_run(
            ckpt, saved["sarfuse"], {**contract.to_dict(), "model": module.model.config}
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_json(run_dir / "config.json")
    loader = _loader(source, contract, config, saved["global_step"] if saved else 0, progress)
    trainer = _trainer(config, run_dir, ckpt, loader.batch_sampler, progress)
    _fit(trainer, module, loader, ckpt, resume)
    return _finish(trainer, run_dir, source, contract, config)


def _check_run_folder(ckpt: Path, resume: bool) -> bool:
    """Refuse to overwrite a run, or to resume none; True when a run is resumed."""
    if ckpt.exists() and not resume:
        raise SarfuseError(
            ckpt, "a run already exists here; pass --resume to continue it or choose another --out"
        )
    if resume and not ckpt.exists():
        raise SarfuseError(ckpt, "nothing to resume: no checkpoint in this run folder")
    return resume


def _module(config: PretrainConfig, contract: DataContract) -> PretrainModule:
    """The training module, its network's initial weights drawn from ``config.seed``; built
    before any data work, so that a fusion that needs a missing sensor fails early."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    return PretrainModule(
        config.__dict__ | {"crops": list(config.crops), "sp_scales": list(config.sp_scales)},
        s1_channels=len(contract.s1_bands),
        s2_channels=len(contract.s2_bands),
        contract=contract.to_dict(),
    )


def _loader(
    source: DataSource,
    contract: DataContract,
    config: PretrainConfig,
    start_step: int,
    progress: bool,
) -> DataLoader:
    """Batches of context crops with their superpixels (computed first, or read from the cache),
    restarting at ``start_step`` of the crop sequence."""
    patches = contract.open_patches(source, superpixels=True)
    _check_scene_sizes(patches, config.crop, source.root)
    compute_all(patches, progress=progress)
    crops = CropDataset(patches, context_size(config), config.crops_per_patch, seed=config.seed)
    return DataLoader(
        crops,
        batch_sampler=CropBatchSampler(len(crops), config.batch, start_step),
        num_workers=config.workers,
        generator=torch.Generator(),  # worker seeds; drawing them must not touch the global RNG
        persistent_workers=config.workers > 0,
    )


def _trainer(
    config: PretrainConfig, run_dir: Path, ckpt: Path, sampler: CropBatchSampler, progress: bool
) -> L.Trainer:
    """A Lightning trainer for the run's steps that logs each step's losses, then checkpoints."""
    accel = accelerator(config.device)
    world = world_size(accel, config.devices, config.num_nodes)
    total = config.steps if config.steps is not None else config.epochs * sampler.epoch_steps(world)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        return L.Trainer(
            accelerator=accel,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=lightning_strategy(config.strategy, world),
            precision=config.precision,
            # a run's length is counted in steps only: resumed from a checkpoint written at an
            # epoch end or at the end of a run, Lightning replays that epoch for one batch and
            # its epoch count runs ahead, so max_epochs would stop the run short of its steps
            max_epochs=-1,
            max_steps=total,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            # a step's row, then its checkpoint
            callbacks=[LossLog(run_dir / "loss.csv"), AtomicCheckpoint(ckpt, config.ckpt_every)],
            use_distributed_sampler=False,  # CropBatchSampler splits the crops between ranks itself
            default_root_dir=run_dir,
            log_every_n_steps=1,
        )


def _fit(
    trainer: L.Trainer, module: PretrainModule, loader: DataLoader, ckpt: Path, resume: bool
) -> None:
    """Train, from ``ckpt`` when resuming; Ctrl-C raises :class:`Interrupted`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        # CropBatchSampler restarts mid-epoch exactly, which Lightning cannot know
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        # tensors and plain data only: a checkpoint from elsewhere must not run code
        try:
            trainer.fit(module, loader, ckpt_path=ckpt if resume else None, weights_only=True)
        except SystemExit:  # Lightning turns Ctrl-C into a graceful stop, then sys.exit(1)
            if trainer.interrupted:
                raise _interrupted(ckpt.parent, ckpt, trainer.global_step) from None
            raise


def _finish(
    trainer: L.Trainer,
    run_dir: Path,
    source: DataSource,
    contract: DataContract,
    config: PretrainConfig,
) -> PretrainResult:
    """The loss curve's plot, the model card and the run's result."""
    from sarfuse.modelcard import checkpoint_card, write_model_card
    from sarfuse.plots import plot_loss_curve

    if trainer.is_global_zero and (run_dir / "loss.csv").exists():
        plot_loss_curve(run_dir / "loss.csv", run_dir / "loss.png")
    first, last = _first_last_loss(run_dir / "loss.csv")
    card = checkpoint_card(source, contract, asdict(config), trainer.global_step, (first, last))
    write_model_card(run_dir, card)
    return PretrainResult(run_dir, run_dir / "last.ckpt", trainer.global_step, first, last, config)


def _interrupted(run_dir: Path, ckpt: Path, step: int) -> Interrupted:
    """What an interrupted run kept and how to resume it."""
    if not ckpt.exists():
        return Interrupted(
            run_dir,
            f"stopped at step {step}, before the first checkpoint (--ckpt-every): nothing to "
            "resume; rerun the same command to start over",
        )
    saved = load_tensors(ckpt, "not a readable checkpoint").get("global_step", "?")
    return Interrupted(
        run_dir,
        f"stopped at step {step}; the checkpoint {ckpt.name} holds step {saved}; resume with "
        f"`sarfuse pretrain --resume --out {run_dir}`",
    )


def world_size(accel: str, devices: int | str, num_nodes: int) -> int:
    """Ranks of a run: devices per node (``auto``: every GPU, or one CPU process) x nodes."""
    if devices == "auto":
        devices = torch.cuda.device_count() if accel == "gpu" else 1
    return int(devices) * num_nodes


def lightning_strategy(strategy: str, world: int) -> str:
    """The Lightning strategy for ``strategy``: DDP for several ranks, allowing unused parameters,
    since most methods leave some heads unused (MCL: the decoder), which plain DDP refuses."""
    if strategy in ("ddp", "auto") and world > 1:
        return "ddp_find_unused_parameters_true"
    return strategy


def _resolved(config: PretrainConfig, sensors: tuple[str, ...]) -> PretrainConfig:
    """``config`` with an ``auto`` fusion replaced by the one the data's sensors call for."""
    fusion = resolve_fusion(config.fusion, sensors)
    if fusion != config.fusion:
        have = "+".join(s.upper() for s in sensors)
        log.info("fusion auto: %s fusion for %s data", fusion, have)
    return replace(config, fusion=fusion)


def _resume_point(path: Path) -> dict:
    """The checkpoint to resume: its global step restarts the crop sequence, its data contract
    and model config must match the run being resumed."""
    try:
        ckpt = load_tensors(path, "not a readable checkpoint")
    except SarfuseError as err:
        raise SarfuseError(path, f"cannot resume: {err.problem}") from None
    if not isinstance(ckpt, dict) or "sarfuse" not in ckpt or "global_step" not in ckpt:
        raise SarfuseError(path, "cannot resume: not a sarfuse pretraining checkpoint")
    return ckpt


def _check_same_run(path: Path, saved: dict, now: dict) -> None:
    """Refuse to resume with settings that change the network or its inputs (contract + model)."""

    def flat(meta: dict) -> dict:
        model = {f"model {k}": v for k, v in meta.get("model", {}).items()}
        return {**{k: v for k, v in meta.items() if k != "model"}, **model}

    old, new = flat(saved), flat(now)
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if changed:
        first = f"{changed[0]} {old.get(changed[0])!r} -> {new.get(changed[0])!r}"
        raise SarfuseError(
            path,
            f"cannot resume with other settings ({', '.join(changed)} differ"
            f"{'' if len(first) > 80 else f'; {first}'}); resume with those in its config.json",
        )


def _first_last_loss(path: Path, window: int = 10) -> tuple[float | None, float | None]:
    """Mean loss over the first and the last ``window`` logged steps."""
    import csv

    if not path.exists():
        return None, None
    with path.open(newline="") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh) if r.get("loss")]
    if not losses:
        return None, None
    w = max(1, min(window, len(losses) // 2))
    return sum(losses[:w]) / w, sum(losses[-w:]) / w


RUN_ONLY = (
    "device",
    "workers",
    "ckpt_every",
    "devices",
    "num_nodes",
    "strategy",
)  # where and how a run trains, not what it learns


def changed_settings(run_dir: Path, config: PretrainConfig) -> str | None:
    """How the settings a run was pretrained with differ from ``config`` (None: they do not).

    Raises :class:`SarfuseError` when the run's ``config.json`` cannot be read.
    """
    try:
        saved = asdict(PretrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())))
    except (OSError, ValueError) as err:
        raise SarfuseError(
            run_dir / "config.json", f"cannot read the run's settings: {err}"
        ) from err
    wanted = asdict(config)
    changed = [k for k in wanted if k not in RUN_ONLY and saved.get(k) != wanted[k]]
    if not changed:
        return None
    was = ", ".join(f"{k} {saved.get(k)!r} (now {wanted[k]!r})" for k in changed)
    return f"was pretrained with other settings: {was}"


def check_reusable(run_dir: Path, config: PretrainConfig) -> None:
    """Refuse to reuse a finished pretraining done with other settings: its scores would be
    reported under the settings asked for now (say, after the default band list changed)."""
    changed = changed_settings(run_dir, config)
    if changed:
        raise SarfuseError(run_dir, f"{changed}; remove it or use another --out")
