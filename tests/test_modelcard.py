"""Model cards next to every checkpoint and probe: the JSON holds the run's real facts and the
Markdown says the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfuse.data.layouts import discover
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.modelcard import CARD_JSON, CARD_MD, CITATION
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain


@pytest.fixture(scope="module")
def scene(synthetic) -> Path:
    return synthetic(size=128, seed=0, layout="scene")


def _card(directory: Path) -> tuple[dict, str]:
    return json.loads((directory / CARD_JSON).read_text()), (directory / CARD_MD).read_text()


def test_checkpoint_card(scene, tmp_path):
    cfg = PretrainConfig(crop=16, batch=4, width=4, feat_dim=8, steps=2, patch_size=64)
    result = pretrain(scene, tmp_path / "run", cfg, progress=False)
    card, md = _card(tmp_path / "run")
    assert card["training"]["steps"] == result.steps == 2
    assert card["training"]["last_loss"] == pytest.approx(result.last_loss)
    assert card["training"]["method"] == "pixel" and card["training"]["fusion"] == "intermediate"
    assert card["training"]["loss"].startswith("The paper's superpixel-level")
    assert card["sensors"] == ["S1", "S2"] and card["bands"]["S1"] == ["VV", "VH"]
    assert card["data"] == {
        "root": str(scene), "layout": "csv", "samples": 1, "labels": None,  # dropped unread
        "labels_used": False,
    }  # fmt: skip
    assert card["normalisation"]["mean_std"]["s1"]["VV"] == [-9.02, 3.58]  # the paper's stats
    assert card["citation"] == CITATION and "MIT" in card["licence"]
    assert md.startswith("# Model card: sarfuse self-supervised fusion network")
    assert "- **steps**: 2" in md and CITATION in md


def test_probe_card(scene, tmp_path):
    cfg = ProbeConfig(labels=2, patch_size=64, epochs=2, features="raw", classifier="linear",
                      self_train=False)  # fmt: skip
    result = run_probe(discover(scene), tmp_path / "probe", cfg, None, progress=False)
    card, md = _card(tmp_path / "probe")
    assert card["scores"]["mIoU"] == result["mIoU"]
    assert card["training"]["labelled_patches"] == 2 and card["training"]["epochs"] == 2
    assert card["training"]["indices"] == result["indices"]
    assert (
        card["training"]["decision"]
        == result["decision"]
        == {"rule": "argmax", "target": "mean IoU"}
    )
    assert card["classes"][0] == "Forest" and card["files"] == ["probe.pt"]
    assert f"- **mIoU**: {result['mIoU']}" in md
