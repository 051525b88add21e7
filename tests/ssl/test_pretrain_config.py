"""PretrainConfig: flat and loadable from older runs, yet giving the configs that own its parts."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from sarfuse.data.bands import ALL_BANDS
from sarfuse.errors import SarfuseError
from sarfuse.models import ModelConfig
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.losses import ContrastOptions
from sarfuse.superpixels import SuperpixelParams

# the config.json of a run written before the configs were split (sarfuse 3f7fb23)
OLDER_RUN = """{"fusion": "intermediate", "method": "pixel", "crop": 32, "crops": [],
 "max_shift": 0.2, "batch": 32, "width": 16, "feat_dim": 32, "epochs": 4, "steps": 60,
 "crops_per_patch": 16, "lr": 0.0003, "weight_decay": 0.0001, "warmup_steps": 20,
 "temperature": 0.5, "tau_plus": 0.1, "beta": 1.0, "w_superpixel": 1.0, "w_image": 1.0,
 "w_cross": 0.0, "projection": false, "ema": 0.0, "sp_scales": [200.0], "sp_sigma": 0.5,
 "sp_min_size": 30, "patch_size": 128, "s1_bands": ["VV", "VH"], "s2_bands": ["all"],
 "stats": null, "s2_offset": null, "seed": 0, "device": "cpu", "workers": 0,
 "precision": "32-true", "devices": "auto", "num_nodes": 1, "strategy": "auto",
 "ckpt_every": 50, "extra": {}}"""


def test_an_older_runs_config_loads_with_every_field():
    saved = json.loads(OLDER_RUN)
    cfg = PretrainConfig.from_dict(saved)
    assert {f.name for f in fields(PretrainConfig)} == set(saved)  # no field renamed or added
    assert cfg == PretrainConfig(fusion="intermediate", steps=60, patch_size=128, device="cpu")
    assert json.loads(json.dumps(asdict(cfg))) == saved


def test_defaults_are_those_of_the_configs_that_own_them():
    cfg = PretrainConfig()
    assert cfg.contrast == ContrastOptions()
    assert cfg.superpixels == [SuperpixelParams()]
    assert cfg.s2_bands == (ALL_BANDS,)
    net = PretrainConfig(fusion="early").model_config(2, 4)
    assert net == ModelConfig("early", 2, 4)


def test_the_parts_follow_the_fields():
    cfg = PretrainConfig(
        fusion="late", width=8, feat_dim=12, temperature=0.2, tau_plus=0.0, beta=0.5,
        sp_scales=(50.0, 400.0), sp_sigma=0.8, sp_min_size=10,
    )  # fmt: skip
    assert cfg.model_config(2, 13) == ModelConfig("late", 2, 13, width=8, feat_dim=12)
    assert cfg.contrast == ContrastOptions(0.2, 0.0, 0.5)
    assert cfg.superpixels == [SuperpixelParams(50.0, 0.8, 10), SuperpixelParams(400.0, 0.8, 10)]


def test_an_unresolved_fusion_builds_no_network():
    with pytest.raises(SarfuseError, match="unknown fusion 'auto'"):
        PretrainConfig().model_config(2, 4)
