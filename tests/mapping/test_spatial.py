"""Spatially blocked splits, and splits saved and reused as (file, window) keys."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.mapping.spatial import (
    BlockSpec,
    block_split,
    draw_split,
    training_side,
    window_gaps,
)
from sarfuse.mapping.splits import Split, load_split, save_split
from sarfuse.mapping.workflow import ProbeConfig, run_probe

P = 64  # patch side
GRID = 8  # patches a side: one 512 x 512 scene
BOXES = [(0, r * P, c * P, P, P) for r in range(GRID) for c in range(GRID)]


def _labels(rng: np.random.Generator) -> list[np.ndarray]:
    """Every patch labelled with one of two classes; a few unlabelled (all 255)."""
    out = []
    for i in range(GRID * GRID):
        value = 255 if i % 13 == 5 else int(rng.integers(0, 2))
        out.append(np.full((P, P), value))
    return out


def test_window_gaps_known_answers():
    a = np.array([[0, 0, 64, 64]])
    b = np.array([[0, 64, 64, 64], [0, 192, 64, 64], [128, 128, 64, 64], [32, 32, 8, 8]])
    assert window_gaps(a, b).tolist() == [[0, 128, 64, 0]]  # touching, 2 patches, diagonal, inside


@pytest.mark.parametrize("buffer", [0, 64, 128])
def test_blocks_keep_evaluation_a_buffer_away_from_training(buffer):
    labels = _labels(np.random.default_rng(0))
    spec = BlockSpec(block=256, buffer=buffer)
    split = block_split(labels, BOXES, 6, seed=1, spec=spec, num_classes=2)
    side = training_side(BOXES, spec, seed=1)
    assert 0 < side.sum() < len(BOXES)
    assert len(split.train) == 6 and side[split.train].all() and not side[split.eval].any()
    boxes = np.array(BOXES)[:, 1:]
    assert window_gaps(boxes[split.eval], boxes[side]).min() >= buffer
    labelled = [i for i in range(len(BOXES)) if (labels[i] != 255).any()]
    assert set(split.train + split.eval) <= set(labelled)
    if buffer == 0:  # no buffer: every labelled patch outside the training blocks is evaluated
        assert split.eval == [i for i in labelled if not side[i]]
    else:
        assert len(split.eval) < len([i for i in labelled if not side[i]])


def test_blocks_are_seeded_and_nested():
    labels = _labels(np.random.default_rng(2))
    spec = BlockSpec(block=256, buffer=64)
    small = block_split(labels, BOXES, 2, seed=3, spec=spec)
    large = block_split(labels, BOXES, 5, seed=3, spec=spec)
    assert small == block_split(labels, BOXES, 2, seed=3, spec=spec)
    assert large.train[:2] == small.train and large.eval == small.eval
    assert block_split(labels, BOXES, 2, seed=4, spec=spec) != small


def test_blocks_fail_clearly_when_nothing_is_left():
    labels = _labels(np.random.default_rng(0))
    with pytest.raises(SarfuseError, match="outside the 1024 px buffer"):
        block_split(labels, BOXES, 2, seed=0, spec=BlockSpec(block=256, buffer=1024))
    with pytest.raises(SarfuseError, match="the training blocks hold"):
        block_split(labels, BOXES, 60, seed=0, spec=BlockSpec(block=256, buffer=0))
    with pytest.raises(SarfuseError, match="random or blocks"):
        draw_split(labels, BOXES, 2, 0, "checkerboard", BlockSpec(256, 64))  # type: ignore[arg-type]


def test_keys_find_the_same_patches_in_another_order_or_folder(tmp_path):
    keys = [(f"scenes/s{i // 4}.tif", (i % 4 * 64, 0, 64, 64)) for i in range(8)]
    split = Split(train=[1, 6], eval=[0, 2, 7])
    path = save_split(tmp_path / "split.json", split, keys, {"mode": "random"})
    assert json.loads(path.read_text())["train_keys"][0] == {
        "file": "scenes/s0.tif", "window": [64, 0, 64, 64]
    }  # fmt: skip
    reordered = keys[::-1]
    got = load_split(path, reordered)
    assert [reordered[i] for i in got.train] == [keys[i] for i in split.train]
    moved = [(f"/elsewhere/{Path(f).name}", w) for f, w in keys]  # same files, other folder
    assert load_split(path, moved) == split
    with pytest.raises(SarfuseError, match="is not in this data"):
        load_split(path, [(f, (r, c, 32, 32)) for f, (r, c, _, _) in keys])  # other patch size


def test_a_split_file_is_reused_by_another_probe(tmp_path):
    data = generate(tmp_path / "data", size=256, seed=0, layout="scene")
    source = discover(data)
    cfg = ProbeConfig(
        labels=3, patch_size=64, epochs=2, features="raw", classifier="linear",
        split_mode="blocks", block_size=128, buffer=0,
    )  # fmt: skip
    first = run_probe(source, tmp_path / "a", cfg, progress=False)
    saved = json.loads((tmp_path / "a" / "split.json").read_text())
    assert (saved["mode"], saved["block_size"], saved["buffer"]) == ("blocks", 128, 0)
    reuse = replace(cfg, classifier="rf", split_file=str(tmp_path / "a" / "split.json"))
    second = run_probe(source, tmp_path / "b", reuse, progress=False)
    again = json.loads((tmp_path / "b" / "split.json").read_text())
    assert again["train_keys"] == saved["train_keys"] and again["eval_keys"] == saved["eval_keys"]
    assert second["eval_patches"] == first["eval_patches"] == len(saved["eval"])


def test_cli_rejects_an_unknown_split_mode(tmp_path):
    from typer.testing import CliRunner

    from sarfuse.cli import app

    runner = CliRunner()
    bad_mode = runner.invoke(app, ["probe", "--split-mode", "checkerboard", "--out", str(tmp_path)])
    assert bad_mode.exit_code == 2 and "Traceback" not in bad_mode.output
    assert (
        bad_mode.stderr.strip()
        == "error: --split-mode must be random or blocks, got 'checkerboard'"
    )
