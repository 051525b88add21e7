"""The supervised baseline: it learns (its loss falls), it reads no patch but its labelled ones,
it is reproducible, and ``run_probe`` with ``features="supervised"`` writes a probe folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import DataSource, discover
from sarfuse.errors import SarfuseError
from sarfuse.mapping import supervised
from sarfuse.mapping.features import feature_setup
from sarfuse.mapping.probe import load_classifier
from sarfuse.mapping.splits import load_split
from sarfuse.mapping.supervised import (
    SupervisedConfig,
    masked_cross_entropy,
    train_supervised,
)
from sarfuse.mapping.workflow import DEFAULT_INDICES, ProbeConfig, open_patches, run_probe

TINY = SupervisedConfig(steps=40, batch=8, crop=16, lr=3e-3, width=8, feat_dim=8)
TRAIN = [0, 5, 10]
K = 10  # DFC2020 classes


@pytest.fixture(scope="module")
def source(synthetic) -> DataSource:
    """One 256 x 256 DFC2020-style sample: 16 patches of 64 pixels (shared, read only)."""
    return discover(synthetic(size=256, seed=0))


@pytest.fixture(scope="module")
def patches(source: DataSource) -> PatchDataset:
    _, contract = feature_setup("supervised", source, None)
    return open_patches(source, contract, ProbeConfig(patch_size=64))


@pytest.fixture(scope="module")
def trained(patches: PatchDataset) -> supervised.SupervisedNet:
    return train_supervised(patches, TRAIN, K, seed=0, config=TINY)


def test_the_training_loss_falls(trained: supervised.SupervisedNet) -> None:
    losses = trained.losses
    assert len(losses) == TINY.steps and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5


def test_features_and_probabilities_have_the_patch_shape(trained, patches) -> None:
    item = patches[3]
    s1, s2 = item["s1"][None], item["s2"][None]
    assert trained.features(s1, s2).shape == (1, TINY.feat_dim, 64, 64)
    proba = trained.proba(s1, s2)
    assert proba.shape == (1, K, 64, 64)
    torch.testing.assert_close(proba.sum(1), torch.ones(1, 64, 64))
    assert not trained.training  # BatchNorm uses its running statistics at inference


def test_only_the_labelled_patches_are_read(patches: PatchDataset, monkeypatch) -> None:
    read: list[int] = []
    original = PatchDataset.__getitem__

    def spy(self: PatchDataset, index: int) -> dict:
        read.append(index)
        return original(self, index)

    monkeypatch.setattr(PatchDataset, "__getitem__", spy)
    train_supervised(patches, TRAIN, K, seed=0, config=replace(TINY, steps=2))
    assert sorted(read) == TRAIN


def test_the_same_seed_gives_the_same_network(patches: PatchDataset) -> None:
    cfg = replace(TINY, steps=3)
    a, b, c = (train_supervised(patches, TRAIN, K, seed=s, config=cfg) for s in (0, 0, 1))
    sa, sb, sc = (n.state_dict() for n in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_one_sensor_gets_early_fusion(source: DataSource, tmp_path: Path) -> None:
    s2 = source.samples[0].s2
    (tmp_path / "samples.csv").write_text(f"s1,s2,label\n,{s2},{source.samples[0].label}\n")
    only_s2 = discover(tmp_path / "samples.csv")
    _, contract = feature_setup("supervised", only_s2, None)
    assert contract.fusion == "early" and contract.method == "supervised"
    net = train_supervised(open_patches(only_s2, contract, ProbeConfig()), [0], K, config=TINY)
    assert net.model.fusion == "early" and net.model.s1_channels == 0


def test_labels_outside_the_classes_are_refused(patches: PatchDataset) -> None:
    with pytest.raises(SarfuseError, match="outside the 2 classes"):
        train_supervised(patches, TRAIN, 2, config=replace(TINY, steps=1))


def test_its_features_need_the_trained_network(source: DataSource, patches) -> None:
    """Until run_probe has drawn the split and trained the network, there are no features."""
    maker, _ = feature_setup("supervised", source, None)
    with pytest.raises(SarfuseError, match="trained first"):
        maker({k: v[None] for k, v in patches[0].items() if k in ("s1", "s2")})


def test_masked_cross_entropy_ignores_unlabelled_pixels() -> None:
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # (1, 2, 1, 2)
    label = torch.tensor([[[0, 255]]])
    expected = torch.log1p(torch.exp(torch.tensor(-2.0)))  # -log softmax of class 0 at pixel 0
    torch.testing.assert_close(masked_cross_entropy(logits, label), expected)
    assert masked_cross_entropy(logits, torch.full_like(label, 255)) == 0.0  # not NaN


def test_run_probe_with_supervised_features(source: DataSource, tmp_path: Path, monkeypatch):
    given: list[list[int]] = []
    original = supervised.train_supervised

    def record(patches, train, *args, **kwargs):
        given.append(list(train))
        return original(patches, train, *args, **kwargs)

    monkeypatch.setattr(supervised, "train_supervised", record)
    cfg = ProbeConfig(3, 64, epochs=3, features="supervised", n_eval=4, supervised_steps=3)
    result = run_probe(source, tmp_path, cfg, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["features"] == "supervised" and 0.0 <= metrics["mIoU"] <= 1.0
    assert metrics == json.loads(json.dumps(result))
    assert given == [load_split(tmp_path / "split.json").train]  # trained on the split only
    clf, meta = load_classifier(tmp_path / "probe.pt")
    assert clf.in_channels == SupervisedConfig.feat_dim + len(DEFAULT_INDICES)
    assert (meta["contract"]["method"], meta["contract"]["fusion"]) == (
        "supervised",
        "intermediate",
    )
