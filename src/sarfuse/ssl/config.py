"""Typed configuration of a pretraining run; saved as JSON beside every run so it can be re-run.

The fields stay flat (the ``config.json`` of every run keeps loading); the defaults of the
network, the loss and the superpixels are read from the configs that own them
(:class:`ModelConfig`, :class:`ContrastOptions`, :class:`SuperpixelParams`), and
:meth:`PretrainConfig.model_config`, :attr:`~PretrainConfig.contrast` and
:attr:`~PretrainConfig.superpixels` give those configs back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from sarfuse.data.bands import ALL_BANDS, DEFAULT_S1_BANDS
from sarfuse.models.fusion import FusionChoice, ModelConfig
from sarfuse.ssl.losses import ContrastOptions
from sarfuse.ssl.methods import MethodName
from sarfuse.superpixels import SuperpixelParams

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]


@dataclass
class PretrainConfig:
    # how S1 and S2 are combined; "auto" (resolved when pretraining starts and saved resolved):
    # intermediate with both sensors, early with one
    fusion: FusionChoice = "auto"
    method: MethodName = "pixel"  # the paper's superpixel contrast, or the MCL / DCCA baselines
    # side of a training view in pixels. The authors draw 32 x 32 crops and contrast the centre
    # 16 x 16 of each view; our views are whole 32 x 32 crops cut from a larger context
    crop: int = 32
    crops: tuple[int, ...] = ()  # multi-crop: extra view sizes drawn per batch (empty = off)
    max_shift: float = 0.2  # largest shift of the second view, as a fraction of the crop
    batch: int = 32  # views per step
    width: int = ModelConfig.width  # ResUnet base width (paper: 64)
    feat_dim: int = ModelConfig.feat_dim  # per-pixel feature size D
    epochs: int = 4  # passes over crops_per_patch crops of every patch
    steps: int | None = None  # stop after this many optimiser steps (overrides epochs when set)
    crops_per_patch: int = 16  # crops drawn from every patch per epoch
    # Adam learning rate, constant after the warm-up. The authors' code builds Adam with 3e-4,
    # but its warm-up ramps to 3e-3 over 25 steps, holds it and divides by 5 at 50 and again at
    # 25 epochs before the end of 1000 (their MCL / DCCA: a constant 3e-4, no warm-up)
    lr: float = 3e-4
    weight_decay: float = 1e-4  # Adam weight decay (the authors')
    warmup_steps: int = 20  # linear learning-rate warm-up
    temperature: float = ContrastOptions.temperature  # contrastive temperature (paper)
    tau_plus: float = ContrastOptions.tau_plus  # hard-negative loss class prior (paper)
    beta: float = ContrastOptions.beta  # hard-negative concentration (paper)
    w_superpixel: float = 1.0  # weight of the superpixel-level term
    w_image: float = 1.0  # weight of the image-level term
    # weight of the S1-vs-S2 image term inside each view (networks with separate S1 and S2
    # branches); the authors' intermediate model has it with weight 1
    w_cross: float = 0.0
    # a 1x1 conv + L2 norm between the features and the superpixel contrast, as the authors do;
    # the probe reads the features before it
    projection: bool = False
    ema: float = 0.0  # momentum of an EMA teacher for the second view (0 = no teacher)
    # Felzenszwalb scales; several = multi-scale superpixels
    sp_scales: tuple[float, ...] = (SuperpixelParams.scale,)
    sp_sigma: float = SuperpixelParams.sigma  # Felzenszwalb sigma (paper)
    sp_min_size: int = SuperpixelParams.min_size  # Felzenszwalb min_size (paper)
    patch_size: int = 256  # scenes are cut into patches of this size
    s1_bands: tuple[str, ...] = DEFAULT_S1_BANDS  # SAR bands fed to the network
    # optical bands fed to the network: ("all",) = every band the data has but B10, the same
    # information as the raw-band baselines; the paper's four 10 m bands are B2, B3, B4, B8
    s2_bands: tuple[str, ...] = (ALL_BANDS,)
    stats: str | None = None  # JSON from `sarfuse stats`; None = the paper's DFC2020 statistics
    # added to S2 values of files that do not state their offset (bare GeoTIFFs); None = 0
    s2_offset: float | None = None
    seed: int = 0  # seeds torch, numpy and python
    device: Device = "auto"  # cuda when present
    workers: int = 0  # DataLoader worker processes
    # Lightning's precision: bf16-mixed autocasts convolutions to bfloat16 (GPUs, and CPUs with
    # AMX / AVX-512 BF16, where it is faster); the default keeps float32
    precision: Precision = "32-true"
    devices: int | str = "auto"  # devices per node (Lightning); auto = every GPU, or one CPU
    num_nodes: int = 1  # machines of a multi-node run (launched by torchrun or SLURM)
    strategy: str = "auto"  # Lightning strategy; auto = DDP when there is more than one device
    ckpt_every: int = 50  # also checkpoint every N steps (and at every epoch end)
    extra: dict = field(default_factory=dict)  # free-form notes kept with the run

    def model_config(self, s1_channels: int, s2_channels: int) -> ModelConfig:
        """The network this run trains on data with these band counts (fusion resolved)."""
        return ModelConfig(self.fusion, s1_channels, s2_channels, self.width, self.feat_dim)

    @property
    def contrast(self) -> ContrastOptions:
        """The contrastive loss's settings."""
        return ContrastOptions(self.temperature, self.tau_plus, self.beta)

    @property
    def superpixels(self) -> list[SuperpixelParams]:
        """One Felzenszwalb parameter set per scale."""
        return [SuperpixelParams(s, self.sp_sigma, self.sp_min_size) for s in self.sp_scales]

    def to_json(self, path: Path) -> None:
        from sarfuse.io_utils import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kw)
