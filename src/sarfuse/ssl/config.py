"""Typed configuration of a pretraining run; saved as JSON beside every run so it can be re-run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from sarfuse.models.fusion import FusionChoice

MethodName = Literal["pixel", "mcl", "dcca"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass
class PretrainConfig:
    # how S1 and S2 are combined; "auto" (resolved when pretraining starts and saved resolved):
    # intermediate with both sensors, early with one
    fusion: FusionChoice = "auto"
    method: MethodName = "pixel"  # the paper's superpixel contrast, or the MCL / DCCA baselines
    crop: int = 32  # side of a training view in pixels (the paper's 32)
    crops: tuple[int, ...] = ()  # multi-crop: extra view sizes drawn per batch (empty = off)
    max_shift: float = 0.2  # largest shift of the second view, as a fraction of the crop
    batch: int = 32  # views per step
    width: int = 16  # ResUnet base width (paper: 64)
    feat_dim: int = 32  # per-pixel feature size D
    epochs: int = 4  # passes over crops_per_patch crops of every patch
    steps: int | None = None  # stop after this many optimiser steps (overrides epochs when set)
    crops_per_patch: int = 16  # crops drawn from every patch per epoch
    lr: float = 3e-4  # Adam learning rate (paper)
    weight_decay: float = 1e-4  # Adam weight decay (paper)
    warmup_steps: int = 20  # linear learning-rate warm-up
    temperature: float = 0.5  # contrastive temperature (paper)
    tau_plus: float = 0.1  # hard-negative loss class prior (paper)
    beta: float = 1.0  # hard-negative concentration (paper)
    w_superpixel: float = 1.0  # weight of the superpixel-level term
    w_image: float = 1.0  # weight of the image-level term
    ema: float = 0.0  # momentum of an EMA teacher for the second view (0 = no teacher)
    sp_scales: tuple[float, ...] = (
        200.0,
    )  # Felzenszwalb scales; several = multi-scale superpixels
    sp_sigma: float = 0.5  # Felzenszwalb sigma (paper)
    sp_min_size: int = 30  # Felzenszwalb min_size (paper)
    patch_size: int = 256  # scenes are cut into patches of this size
    s1_bands: tuple[str, ...] = ("VV", "VH")  # SAR bands fed to the network
    # optical bands fed to the network: ("all",) = every band the data has but B10, the same
    # information as the raw-band baselines; the paper's four 10 m bands are B2, B3, B4, B8
    s2_bands: tuple[str, ...] = ("all",)
    stats: str | None = None  # JSON from `sarfuse stats`; None = the paper's DFC2020 statistics
    seed: int = 0  # seeds torch, numpy and python
    device: Device = "auto"  # cuda when present
    workers: int = 0  # DataLoader worker processes
    ckpt_every: int = 50  # also checkpoint every N steps (and at every epoch end)
    extra: dict = field(default_factory=dict)  # free-form notes kept with the run

    def to_json(self, path: Path) -> None:
        from sarfuse.io_utils import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kw)
