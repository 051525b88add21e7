"""The supervised baseline (the paper's WSL curve): the fusion network trained from scratch on the
labelled patches of a split only, with cross-entropy through a 1x1 classification head.

It shows what the few labels buy without pretraining. The network is the one pretraining builds
(fusion chosen from the sensors, width and feature size of :class:`PretrainConfig`), and its
crops are augmented as pretraining's second view is (random shift within the patch, random
flips), so the two curves differ only in how the network learned. Its per-pixel features then
go to the usual probe, like every other feature kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarfuse.checkpoint import Pretrained
from sarfuse.contract import DataContract
from sarfuse.data.dataset import PatchDataset
from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError, check
from sarfuse.mapping.features import FeatureMaker, PatchFeatures
from sarfuse.models.fusion import FusionNet, ModelConfig, build_model, resolve_fusion
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.views import make_views, sample_view_params


@dataclass(frozen=True)
class SupervisedConfig:
    steps: int = 150  # Adam steps (about 15 s on 2 CPU cores at the defaults)
    batch: int = 8  # crops per step, drawn with replacement from the labelled patches
    crop: int = 32  # side of a training crop (pretraining's view size; capped at the patch)
    lr: float = 1e-3  # Adam learning rate: higher than pretraining's, for few steps from scratch
    weight_decay: float = PretrainConfig.weight_decay  # Adam weight decay
    width: int = PretrainConfig.width  # ResUnet base width
    feat_dim: int = PretrainConfig.feat_dim  # per-pixel feature size D


class SupervisedNet(nn.Module):
    """A fusion network and a 1x1 convolution to class logits; ``losses`` is its training curve."""

    def __init__(self, model: FusionNet, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Conv2d(model.feature_dim, num_classes, 1)
        self.losses: list[float] = []

    def features(self, s1: Tensor | None, s2: Tensor | None) -> Tensor:
        """Per-pixel features (B, D, H, W) of normalised inputs."""
        return self.model(s1, s2)["features"]

    def forward(self, s1: Tensor | None, s2: Tensor | None) -> Tensor:
        """Class logits (B, K, H, W)."""
        return self.head(self.features(s1, s2))

    @torch.no_grad()
    def proba(self, s1: Tensor | None, s2: Tensor | None) -> Tensor:
        """Class probabilities (B, K, H, W), in inference mode (BatchNorm running statistics)."""
        self.eval()
        return self(s1, s2).softmax(1)


def labelled_patches(patches: PatchDataset, train: Sequence[int], device: str) -> dict[str, Tensor]:
    """The patches ``train`` stacked: s1 / s2 (N, C, P, P), valid and label (N, P, P).

    The only place the baseline reads data, so it never sees any other patch.
    """
    items = [patches[i] for i in train]
    keys = [k for k in ("s1", "s2", "valid", "label") if k in items[0]]
    return {k: torch.stack([item[k] for item in items]).to(device) for k in keys}


def masked_cross_entropy(logits: Tensor, label: Tensor) -> Tensor:
    """Mean cross-entropy over labelled pixels; 0 (still in the graph) when a batch has none,
    where PyTorch's ``ignore_index`` mean would give NaN."""
    total = F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (label != IGNORE_INDEX).sum().clamp(min=1)


def train_supervised(
    patches: PatchDataset,
    train: Sequence[int],
    num_classes: int,
    seed: int = 0,
    device: str = "cpu",
    config: SupervisedConfig | None = None,
) -> SupervisedNet:
    """Train the baseline network on the patches ``train`` of ``patches`` (and no other).

    Returns it in eval mode; the same ``seed`` gives the same weights.
    """
    config = config or SupervisedConfig()
    check(len(train) > 0, None, "the supervised baseline needs at least one labelled patch")
    data = labelled_patches(patches, train, device)
    check("label" in data, patches.source.root, "the supervised baseline needs labels")
    bad = data["label"][(data["label"] != IGNORE_INDEX) & (data["label"] >= num_classes)]
    if bad.numel():
        raise SarfuseError(None, f"label {int(bad[0])} outside the {num_classes} classes")
    torch.manual_seed(seed)  # the initial weights
    model = build_model(
        ModelConfig(
            resolve_fusion("auto", patches.sensors),
            len(patches.s1_bands),
            len(patches.s2_bands),
            config.width,
            config.feat_dim,
        )
    )
    net = SupervisedNet(model, num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)  # the crops and flips
    size = patches.patch_size
    crop = min(config.crop, size)
    net.train()
    for _ in range(config.steps):
        pick = torch.randint(len(train), (config.batch,), generator=generator).to(device)
        batch = {k: v[pick] for k, v in data.items()}  # (B, ..., P, P)
        params = sample_view_params(config.batch, (size - crop) // 2, generator)
        _, view = make_views(batch, params, crop)  # shifted, flipped (B, ..., crop, crop)
        loss = masked_cross_entropy(net(view.get("s1"), view.get("s2")), view["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.losses.append(float(loss.detach()))
    return net.eval()


def supervised_features(
    patches: PatchDataset,
    train: Sequence[int],
    num_classes: int,
    contract: DataContract,
    seed: int = 0,
    device: str = "cpu",
    config: SupervisedConfig | None = None,
) -> PatchFeatures:
    """Features of every patch from a baseline network trained on the patches ``train``."""
    net = train_supervised(patches, train, num_classes, seed, device, config)
    frozen = Pretrained(net.model, contract, f"supervised on {len(train)} patches, seed {seed}")
    return PatchFeatures(patches, FeatureMaker("supervised", frozen, device))
