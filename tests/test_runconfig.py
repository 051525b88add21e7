"""Config files into the typed dataclasses and back: strict keys and types, nested configs, and
the files run folders write (a pretraining's config.json, a probe's config.json) loading back."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from sarfuse.errors import SarfuseError
from sarfuse.experiment import ExperimentConfig
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.workflow import ProbeConfig
from sarfuse.runconfig import field_default, load_config, resume_config, save_config
from sarfuse.ssl.config import PretrainConfig


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_pretraining_config_json_loads_back_as_it_was(tmp_path: Path) -> None:
    cfg = PretrainConfig(width=8, s2_bands=("B2", "B3"), sp_scales=(100.0, 300.0), devices=2)
    cfg.to_json(tmp_path / "config.json")
    assert load_config(tmp_path / "config.json", PretrainConfig()) == cfg


def test_a_probe_config_json_loads_back_with_its_nested_self_training(tmp_path: Path) -> None:
    cfg = ProbeConfig(labels=3, indices=("ndvi",), split_mode="blocks", block_size=128)
    cfg = replace(cfg, self_training=replace(cfg.self_training, rounds=7))
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    assert load_config(tmp_path / "config.json", ProbeConfig()) == cfg


def test_save_then_load_is_the_same_config(tmp_path: Path) -> None:
    exp = ExperimentConfig(labels=(1, 5), pretrain=PretrainConfig(steps=3, lr=1e-3))
    assert load_config(save_config(exp, tmp_path / "exp.yaml"), ExperimentConfig()) == exp
    tiles = MapConfig(tile=128, overlap=16, cog=False)
    assert load_config(save_config(tiles, tmp_path / "map.yaml"), MapConfig()) == tiles


def test_a_file_sets_only_its_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "width: 8\nlr: 3e-4\ncrops: [16, 24]\npretrain_note: x\n")
    with pytest.raises(SarfuseError, match="pretrain_note"):
        load_config(path, PretrainConfig())
    path = _write(tmp_path / "c.yaml", "width: 8\nlr: 3e-4\ncrops: [16, 24]\n")
    cfg = load_config(path, PretrainConfig(seed=3))
    assert (cfg.width, cfg.lr, cfg.crops, cfg.seed) == (8, 3e-4, (16, 24), 3)
    assert cfg.feat_dim == field_default(PretrainConfig, "feat_dim")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("widht: 8\n", ["unknown key 'widht'"]),
        ("width: eight\n", ["width: expected int", "'eight'"]),
        ("width: true\n", ["width: expected int"]),
        ("method: simclr\n", ["method: expected", "'pixel'"]),
        ("s2_bands: B2\n", ["s2_bands: expected a list"]),
        ("[1, 2]\n", ["a config file is a mapping"]),
        ("width: [\n", ["not valid YAML"]),
    ],
)
def test_bad_files_are_one_line_naming_the_file_and_key(file_error, text, fragments) -> None:
    line = file_error(lambda path: load_config(path, PretrainConfig()), "bad.yaml", text)
    for fragment in fragments:
        assert fragment in line


def test_a_nested_key_is_named_with_its_section(tmp_path: Path) -> None:
    path = _write(tmp_path / "exp.yaml", "probe:\n  self_training:\n    rounds: many\n")
    with pytest.raises(SarfuseError, match="probe.self_training.rounds: expected int"):
        load_config(path, ExperimentConfig())
    path = _write(tmp_path / "exp.yaml", "pretrain:\n  steps: 9\n")
    cfg = load_config(path, ExperimentConfig())
    assert cfg.pretrain.steps == 9 and cfg.pretrain.width == PretrainConfig().width


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SarfuseError, match="config file not found"):
        load_config(tmp_path / "none.yaml", MapConfig())


def test_resume_keeps_the_run_settings_but_where_it_runs(tmp_path: Path) -> None:
    assert resume_config(tmp_path, {}) is None
    PretrainConfig(width=8, steps=10, device="cpu").to_json(tmp_path / "config.json")
    cfg = resume_config(tmp_path, {"steps": 20, "width": 4, "precision": "bf16-mixed"})
    assert (cfg.width, cfg.steps, cfg.precision) == (8, 20, "bf16-mixed")
    assert cfg.device == PretrainConfig().device  # not the saved one: it may be another machine
