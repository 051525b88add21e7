"""``sarfuse probe``: train a classifier on few labelled patches and score it honestly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from sarfuse.data.dataset import PatchDataset
from sarfuse.data.normalise import Normaliser
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_write_text
from sarfuse.mapping.features import TRAINED_ON_SPLIT, FeatureKind, PatchFeatures, feature_setup
from sarfuse.mapping.metrics import confusion_matrix, scores
from sarfuse.mapping.probe import predict_proba, save_classifier, train_classifier
from sarfuse.mapping.splits import Split, few_label_split, save_split
from sarfuse.mapping.supervised import SupervisedConfig, supervised_features

DEFAULT_INDICES = ("mean_sar", "ndvi", "ndwi", "dbsi")


@dataclass
class ProbeConfig:
    labels: int = 10  # labelled patches used for training
    patch_size: int = 64  # scenes are cut into patches of this size; N counts these patches
    seed: int = 0  # draws the split and seeds the classifier
    features: FeatureKind = "pretrained"  # pretrained | random | raw | supervised
    classifier: Literal["linear", "rf"] = "linear"
    indices: tuple[str, ...] = DEFAULT_INDICES  # spectral indices appended to the features
    epochs: int = 50  # linear probe epochs (paper)
    lr: float = 0.01  # linear probe SGD learning rate (paper)
    momentum: float = 0.9  # linear probe SGD momentum (paper)
    probe_batch: int = 1  # labelled patches per SGD step
    n_eval: int | None = None  # fixed held-out evaluation patches (None: all unlabelled ones)
    max_pixels: int = 500_000  # labelled pixels kept for training (uniform sample)
    supervised_steps: int = SupervisedConfig.steps  # Adam steps of the supervised baseline
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


def _available_indices(names: tuple[str, ...], sensors: tuple[str, ...]) -> tuple[str, ...]:
    """Drop indices whose sensor is absent, so S1-only and S2-only data work by default."""
    from sarfuse.data.indices import required_bands

    return tuple(
        n for n in names if all(s in sensors for s, b in required_bands((n,)).items() if b)
    )


def open_patches(source, contract: dict, cfg: ProbeConfig) -> PatchDataset:
    return PatchDataset(
        source,
        patch_size=cfg.patch_size,
        s1_bands=tuple(contract["s1_bands"]),
        s2_bands=tuple(contract["s2_bands"]),
        normaliser=Normaliser.from_stats(contract["stats"]),
        indices=_available_indices(cfg.indices, source.sensors),
    )


def patch_labels(patches: PatchDataset, progress: bool = True) -> list:
    """The label array (P, P) of every patch (one read pass), for drawing splits."""
    if not patches.source.has_labels:
        raise SarfuseError(patches.source.root, "the probe needs labels, and this data has none")
    return [
        patches[i]["label"].numpy()
        for i in tqdm(range(len(patches)), desc="labels", disable=not progress, leave=False)
    ]


def evaluate(clf, features: PatchFeatures, indices, num_classes: int) -> torch.Tensor:
    """Confusion matrix of ``clf`` over the patches ``indices`` (streamed in batches)."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for feats, labels in features.batches(indices):
        pred = predict_proba(clf, feats).argmax(1)
        cm += confusion_matrix(pred, labels, num_classes)
    return cm


def run_probe(
    source,
    out: str | Path,
    cfg: ProbeConfig,
    checkpoint: str | Path | None = None,
    split: Split | None = None,
    labels: list | None = None,
    progress: bool = True,
    features: PatchFeatures | None = None,
) -> dict:
    """Train ``cfg.classifier`` on ``cfg.labels`` patches and evaluate it; write PROBE_DIR.

    ``split``, ``labels`` and cached ``features`` may be passed in (the experiment reuses them).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scheme = source.scheme
    if scheme is None or not source.has_labels:
        raise SarfuseError(source.root, "the probe needs labels, and this data has none")
    maker, contract = feature_setup(cfg.features, source, checkpoint, cfg.seed, cfg.device)
    if features is None:
        features = PatchFeatures(open_patches(source, contract, cfg), maker)
    patches = features.patches
    k = len(scheme.classes)
    if split is None:
        labels = labels if labels is not None else patch_labels(patches, progress)
        split = few_label_split(labels, cfg.labels, cfg.seed, n_eval=cfg.n_eval, num_classes=k)
    save_split(out / "split.json", split)
    if cfg.features in TRAINED_ON_SPLIT:  # a network trained on the split's labelled patches only
        net_cfg = SupervisedConfig(steps=cfg.supervised_steps)
        features = supervised_features(
            patches, split.train, k, contract, cfg.seed, cfg.device, net_cfg
        )
    torch.manual_seed(cfg.seed)
    options = (
        {
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "momentum": cfg.momentum,
            "batch_size": cfg.probe_batch,
            "device": cfg.device,
            "max_pixels": cfg.max_pixels,
            "seed": cfg.seed,
        }
        if cfg.classifier == "linear"
        else {"max_pixels": cfg.max_pixels, "seed": cfg.seed}
    )
    clf, history = train_classifier(
        cfg.classifier, lambda: features.batches(split.train), None, k, **options
    )
    cm = evaluate(clf, features, split.eval, k)
    result = scores(cm, [c.name for c in scheme.classes])
    result.update(
        features=cfg.features,
        classifier=cfg.classifier,
        labelled_patches=len(split.train),
        eval_patches=len(split.eval),
        patch_size=cfg.patch_size,
        seed=cfg.seed,
        indices=list(patches.indices),
        checkpoint=None if checkpoint is None else str(checkpoint),
    )
    meta = {
        "features": cfg.features,
        "indices": list(patches.indices),
        "contract": contract,
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
        "scheme": scheme.to_json(),
        "seed": cfg.seed,
        "probe_loss": history,
    }
    save_classifier(out / "probe.pt", clf, meta)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2))
    from sarfuse.plots import plot_confusion

    plot_confusion(cm.numpy(), [c.name for c in scheme.classes], out / "confusion.png")
    return result
