"""Per-pixel features for the probe: a frozen network's, a random network's, raw bands, a
network's features with the raw bands beside them (``pretrained+raw``: the network's input
bands keep full-resolution detail at edges that the network's features blur), or those of a
network trained on the split's labelled patches only (the supervised baseline).

All go through the same code so that baselines differ from the method only in the features,
never in the pixels, the classifier or the evaluation. Channels are always laid out as
``[network features | raw bands | indices]`` (the parts a kind has), so the columns of any kind
can be cut out of ``pretrained+raw`` features (:func:`feature_columns`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Subset

from sarfuse.checkpoint import Pretrained, load_pretrained
from sarfuse.contract import DataContract
from sarfuse.data.layouts import DataSource
from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.models.fusion import resolve_fusion
from sarfuse.runtime import autocast

FeatureKind = Literal["pretrained", "random", "raw", "pretrained+raw", "supervised"]
NEEDS_CHECKPOINT = ("pretrained", "random", "pretrained+raw")
TRAINED_ON_SPLIT = ("supervised",)  # its network is trained once the split is drawn (run_probe)


class FeatureMaker:
    """Turn a batch dict of normalised patches into features (B, C, H, W) on the CPU."""

    def __init__(
        self, kind: FeatureKind, net: Pretrained | None, device: str = "cpu", precision: str = "32"
    ) -> None:
        if kind in NEEDS_CHECKPOINT and net is None:
            raise SarfuseError(None, f"--features {kind} needs a --checkpoint")
        self.kind, self.device, self.precision = kind, device, precision
        self.net = net.to(device) if net is not None and kind != "raw" else None

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        parts = []
        if self.net is None and self.kind in TRAINED_ON_SPLIT:
            raise SarfuseError(None, f"{self.kind} features need their network trained first")
        if self.net is not None:
            with autocast(self.device, self.precision):
                features = self.net(batch.get("s1"), batch.get("s2"))
            parts.append(features.float().cpu())
        if self.kind in ("raw", "pretrained+raw"):
            parts += [batch[s] for s in ("s1", "s2") if s in batch]
        if "indices" in batch:
            parts.append(batch["indices"])
        return torch.cat(_alike(parts), 1)


def _alike(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parts in the first one's memory layout: a mapping network answers channels-last,
    and concatenating it with plain (B, C, H, W) bands took ~9x longer than with its kind."""
    first = parts[0]
    if (
        first.dim() == 4
        and not first.is_contiguous()
        and first.is_contiguous(memory_format=torch.channels_last)
    ):
        return [p.contiguous(memory_format=torch.channels_last) for p in parts]
    return parts


def feature_setup(
    kind: FeatureKind,
    source: DataSource,
    checkpoint: str | Path | None,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[FeatureMaker, DataContract]:
    """The feature maker and the data contract to read ``source`` with.

    A kind trained on the split reads the raw baseline's inputs; its maker has no network yet.
    """
    if kind in TRAINED_ON_SPLIT:
        _, contract = feature_setup("raw", source, checkpoint, seed, device)
        fusion = resolve_fusion("auto", source.sensors)  # as train_supervised builds it
        return FeatureMaker(kind, None, device), replace(contract, fusion=fusion, method=kind)
    if kind == "raw":
        like = load_pretrained(checkpoint).contract if checkpoint is not None else None
        return FeatureMaker("raw", None, device), DataContract.for_raw_bands(source, like)
    if checkpoint is None:
        raise SarfuseError(None, f"--features {kind} needs a --checkpoint")
    net = load_pretrained(checkpoint)
    net.contract.check(source)
    if kind == "random":
        net = net.randomised(seed)
    return FeatureMaker(kind, net, device), net.contract


def feature_columns(kind: FeatureKind, net_dim: int, raw_dim: int, n_indices: int) -> list[int]:
    """Channels of ``kind`` within ``pretrained+raw`` features laid out [net | raw | indices]."""
    net = list(range(net_dim))
    raw = list(range(net_dim, net_dim + raw_dim))
    idx = list(range(net_dim + raw_dim, net_dim + raw_dim + n_indices))
    parts = {"raw": raw, "pretrained": net, "random": net, "pretrained+raw": net + raw}
    return parts[kind] + idx


class PatchFeatures:
    """Features and labels of a dataset's patches, streamed in batches.

    With ``cache`` the features of each patch are kept in memory after their first computation,
    so an experiment probing one network at several N and seeds runs the network once.
    """

    def __init__(self, patches, maker: FeatureMaker, cache: bool = False, batch_size: int = 8):
        self.patches, self.maker, self.cache, self.batch_size = patches, maker, cache, batch_size
        self._store: dict[int, tuple[torch.Tensor, ...]] = {}

    def batches(self, indices: Sequence[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (features (B, C, H, W), labels (B, H, W)) over the patches ``indices``."""
        for feats, labels, _ in self.batches_with_valid(indices):
            yield feats, labels

    def batches_with_valid(self, indices: Sequence[int]) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (features (B, C, H, W), labels (B, H, W), valid (B, H, W)) over ``indices``."""
        indices = list(indices)
        missing = [i for i in indices if i not in self._store]
        if not self.cache or not missing:
            if self.cache:
                yield from self._from_store(indices)
                return
            yield from self._compute(indices)
            return
        for i, pair in zip(missing, self._per_patch(missing), strict=True):
            self._store[i] = pair
        yield from self._from_store(indices)

    def _from_store(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, ...]]:
        for start in range(0, len(indices), self.batch_size):
            part = [self._store[i] for i in indices[start : start + self.batch_size]]
            yield tuple(torch.stack(column) for column in zip(*part, strict=True))

    def _per_patch(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in self._compute(indices):
            yield from zip(*batch, strict=True)

    def _compute(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, ...]]:
        subset = Subset(self.patches, indices)
        for batch in DataLoader(subset, batch_size=self.batch_size, shuffle=False):
            labels = batch.get("label")
            if labels is None:  # unlabelled data: every pixel ignored
                labels = torch.full(batch["valid"].shape, IGNORE_INDEX, dtype=torch.int64)
            yield self.maker(batch), labels, batch["valid"]
