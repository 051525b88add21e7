"""SAR-optical fusion networks (early, intermediate, late), built through one registry.

Every network maps ``(s1 (B, C1, H, W) | None, s2 (B, C2, H, W) | None)`` to a dict with
``features`` (B, D, H, W) and ``image`` (B, D), D = ``feat_dim``, so mapping code never needs
to know which fusion produced them. Networks with one branch per sensor also return the
per-sensor parts that the cross-sensor methods (MCL, DCCA, late-fusion contrast) need;
``out_dims`` names every output and its size. :meth:`FusionNet.probe` gives what a probe reads:
the decoder's ``features``, or the encoders' ``hypercolumn`` (the only part that image-level
methods train).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from sarfuse.errors import SarfuseError, check
from sarfuse.models.hypercolumn import hypercolumn
from sarfuse.models.resunet import Decoder, Encoder, ImageHead, Norm, ResUnet, pad_to_multiple

# the names of FUSIONS below (a test keeps the two equal); "auto" is chosen from the sensors
FusionName = Literal["early", "intermediate", "late"]
FusionChoice = Literal["auto", FusionName]
ProbeKind = Literal["features", "hypercolumn"]


def _check_input(x: Tensor | None, channels: int, sensor: str) -> None:
    """Input present exactly when the model has channels for it, with that many bands."""
    if channels == 0:
        check(x is None, None, f"this model has no {sensor} input, but {sensor} data was given")
        return
    check(
        x is not None, None, f"this model needs {sensor} input ({channels} bands), none was given"
    )
    check(
        x.ndim == 4 and x.shape[1] == channels,
        None,
        f"this model expects {sensor} of shape (B, {channels}, H, W), got {tuple(x.shape)}",
    )


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a fusion network (saved in checkpoints); the only home of
    the network's defaults. An invalid combination is refused when the config is made."""

    fusion: FusionName  # how S1 and S2 are combined
    s1_channels: int  # S1 bands, 0 = sensor absent
    s2_channels: int  # S2 bands, 0 = sensor absent
    width: int = 16  # base encoder width (paper: 64); 16 trains on a laptop CPU
    feat_dim: int = 32  # per-pixel and image feature size D
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per encoder stage (ResNet-18)
    norm: Norm = "batch"  # or "group" for tiny batches

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))  # a list from older metadata
        _check_config(self)


def _check_config(cfg: ModelConfig) -> None:
    """One-line errors for a network that cannot be built."""
    if cfg.fusion not in FUSIONS:
        raise SarfuseError(
            None, f"unknown fusion {cfg.fusion!r}; choose one of {', '.join(FUSIONS)}"
        )
    check(cfg.norm in ("batch", "group"), None, f"unknown norm {cfg.norm!r}; choose batch or group")
    s1, s2 = cfg.s1_channels, cfg.s2_channels
    check(
        s1 >= 0 and s2 >= 0 and s1 + s2 > 0,
        None,
        f"a model needs input bands, got {s1} S1 and {s2} S2 bands",
    )
    if cfg.fusion != "early" and 0 in (s1, s2):
        only = "S2" if s1 == 0 else "S1"
        raise SarfuseError(
            None,
            f"{cfg.fusion} fusion needs both Sentinel-1 and Sentinel-2; this data has only {only} "
            "(use --fusion early)",
        )
    check(len(cfg.blocks) == 4, None, f"blocks must give 4 stage depths, got {cfg.blocks}")


class FusionNet(nn.Module):
    """Base of the fusion networks: input checks and the config that rebuilds the network.

    ``cfg`` is the :class:`ModelConfig` it was built from, ``build_model(net.cfg)`` gives the
    same architecture; ``config`` is that as a plain dict, as checkpoints store it. Subclasses
    set ``out_dims`` (output name -> channels) and ``hyper_dim`` (channels of the hypercolumn).
    """

    fusion: FusionName
    out_dims: dict[str, int]
    hyper_dim: int

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.s1_channels, self.s2_channels = cfg.s1_channels, cfg.s2_channels
        self.feature_dim = cfg.feat_dim
        self.cfg = cfg
        self.config = asdict(cfg)

    def forward(self, s1: Tensor | None, s2: Tensor | None) -> dict[str, Tensor]:
        self._check(s1, s2)
        return self.fuse(s1, s2)

    def hypercolumn(self, s1: Tensor | None, s2: Tensor | None) -> Tensor:
        """Every encoder level upsampled to the input size and stacked: (B, hyper_dim, H, W)."""
        self._check(s1, s2)
        h, w = next(x for x in (s1, s2) if x is not None).shape[-2:]
        levels = self.encode(s1, s2)
        return hypercolumn(levels, tuple(levels[0].shape[-2:]))[..., :h, :w]

    def probe(self, s1: Tensor | None, s2: Tensor | None, kind: ProbeKind = "features") -> Tensor:
        """The per-pixel map (B, probe_dim(kind), H, W) that a probe reads."""
        return PROBES[kind](self, s1, s2)

    def probe_dim(self, kind: ProbeKind = "features") -> int:
        return {"features": self.feature_dim, "hypercolumn": self.hyper_dim}[kind]

    def _check(self, s1: Tensor | None, s2: Tensor | None) -> None:
        _check_input(s1, self.s1_channels, "S1")
        _check_input(s2, self.s2_channels, "S2")

    def fuse(self, s1: Tensor | None, s2: Tensor | None) -> dict[str, Tensor]:
        raise NotImplementedError

    def encode(self, s1: Tensor | None, s2: Tensor | None) -> list[Tensor]:
        """Every encoder map, at the input padded to a multiple of 8; the first at full size."""
        raise NotImplementedError


class EarlyFusion(FusionNet):
    """One ResUnet on the stacked S1 + S2 bands (or on the only sensor present)."""

    fusion = "early"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.net = ResUnet(
            cfg.s1_channels + cfg.s2_channels, cfg.width, cfg.feat_dim, cfg.blocks, cfg.norm
        )
        self.out_dims = {"features": cfg.feat_dim, "image": cfg.feat_dim}
        self.hyper_dim = sum(self.net.encoder.channels)

    def fuse(self, s1: Tensor | None, s2: Tensor | None) -> dict[str, Tensor]:
        features, image = self.net(self._stack(s1, s2))
        return {"features": features, "image": image}

    def encode(self, s1: Tensor | None, s2: Tensor | None) -> list[Tensor]:
        return self.net.encode(pad_to_multiple(self._stack(s1, s2)))

    @staticmethod
    def _stack(s1: Tensor | None, s2: Tensor | None) -> Tensor:
        return torch.cat([t for t in (s1, s2) if t is not None], dim=1)  # (B, C1 + C2, H, W)


class IntermediateFusion(FusionNet):
    """Two encoders (S2, S1) of half width concatenated at every level, one shared decoder.

    The concatenated levels have the channels of a width-``width`` encoder, so the decoder and
    the fused image head are those of a ResUnet of that width. ``s1_image`` / ``s2_image`` are
    each sensor's bottleneck, pooled and projected, for image-level cross-sensor methods.
    """

    fusion = "intermediate"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        check(cfg.width % 2 == 0, None, f"intermediate fusion needs an even width, got {cfg.width}")
        half, d = cfg.width // 2, cfg.feat_dim
        self.s2_encoder = Encoder(cfg.s2_channels, half, cfg.blocks, cfg.norm)
        self.s1_encoder = Encoder(cfg.s1_channels, half, cfg.blocks, cfg.norm)
        channels = [
            a + b for a, b in zip(self.s2_encoder.channels, self.s1_encoder.channels, strict=True)
        ]
        self.decoder = Decoder(channels, d, cfg.norm)
        self.image_head = ImageHead(channels[-1], d)
        self.s1_head = ImageHead(self.s1_encoder.channels[-1], d)
        self.s2_head = ImageHead(self.s2_encoder.channels[-1], d)
        self.out_dims = dict.fromkeys(("features", "image", "s1_image", "s2_image"), d)
        self.hyper_dim = sum(channels)

    def fuse(self, s1: Tensor, s2: Tensor) -> dict[str, Tensor]:
        h, w = s2.shape[-2:]
        l2, l1 = self._branches(s1, s2)
        levels = self._merge(l2, l1)
        return {
            "features": self.decoder(levels)[..., :h, :w],
            "image": self.image_head(levels[-1]),
            "s1_image": self.s1_head(l1[-1]),
            "s2_image": self.s2_head(l2[-1]),
        }

    def encode(self, s1: Tensor, s2: Tensor) -> list[Tensor]:
        return self._merge(*self._branches(s1, s2))

    def _branches(self, s1: Tensor, s2: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The S2 and the S1 encoder levels."""
        return self.s2_encoder(pad_to_multiple(s2)), self.s1_encoder(pad_to_multiple(s1))

    @staticmethod
    def _merge(l2: list[Tensor], l1: list[Tensor]) -> list[Tensor]:
        return [torch.cat([a, b], dim=1) for a, b in zip(l2, l1, strict=True)]


class LateFusion(FusionNet):
    """Two separate ResUnets, one per sensor, each giving ``feat_dim // 2`` features.

    Each branch has half the feature size so that ``features`` = cat(S1, S2) (B, feat_dim, H, W)
    has the same size D as the other fusions, and so that S1 and S2 features of the same
    superpixel can be contrasted directly. ``image`` = cat(s1_image, s2_image).
    """

    fusion = "late"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        d = cfg.feat_dim
        check(d % 2 == 0, None, f"late fusion needs an even feature size, got {d}")
        self.s1_net = ResUnet(cfg.s1_channels, cfg.width, d // 2, cfg.blocks, cfg.norm)
        self.s2_net = ResUnet(cfg.s2_channels, cfg.width, d // 2, cfg.blocks, cfg.norm)
        per_sensor = ("s1_features", "s2_features", "s1_image", "s2_image")
        self.out_dims = {"features": d, "image": d, **dict.fromkeys(per_sensor, d // 2)}
        self.hyper_dim = sum(self.s1_net.encoder.channels) + sum(self.s2_net.encoder.channels)

    def fuse(self, s1: Tensor, s2: Tensor) -> dict[str, Tensor]:
        f1, i1 = self.s1_net(s1)
        f2, i2 = self.s2_net(s2)
        return {
            "features": torch.cat([f1, f2], dim=1),
            "image": torch.cat([i1, i2], dim=1),
            "s1_features": f1,
            "s2_features": f2,
            "s1_image": i1,
            "s2_image": i2,
        }

    def encode(self, s1: Tensor, s2: Tensor) -> list[Tensor]:
        return self.s1_net.encode(pad_to_multiple(s1)) + self.s2_net.encode(pad_to_multiple(s2))


PROBES: dict[str, Callable[[FusionNet, Tensor | None, Tensor | None], Tensor]] = {
    "features": lambda net, s1, s2: net(s1, s2)["features"],
    "hypercolumn": lambda net, s1, s2: net.hypercolumn(s1, s2),
}

FUSIONS: dict[str, type[FusionNet]] = {
    "early": EarlyFusion,
    "intermediate": IntermediateFusion,
    "late": LateFusion,
}


def resolve_fusion(fusion: FusionChoice, sensors: Sequence[str]) -> FusionName:
    """The fusion to build: ``auto`` is intermediate (the paper's) when the data has S1 and S2,
    else early, the only fusion that runs on one sensor; any other name is kept as it is."""
    if fusion != "auto":
        return fusion
    return "intermediate" if {"s1", "s2"} <= set(sensors) else "early"


def build_model(cfg: ModelConfig) -> FusionNet:
    """The fusion network ``cfg.fusion`` for the given band counts (0 = sensor absent)."""
    return FUSIONS[cfg.fusion](cfg)
