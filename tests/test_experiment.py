"""``run_experiment`` on a tiny generated dataset: the results table with the method and both
baselines, the summary, the figure, and a finished pretraining reused instead of retrained."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from sarfuse.data.layouts import discover
from sarfuse.errors import SarfuseError
from sarfuse.experiment import (
    COLUMNS,
    ExperimentConfig,
    model_grid,
    run_experiment,
    run_experiment_config,
    summarise,
)
from sarfuse.mapping.features import PatchFeatures
from sarfuse.mapping.metrics import scores
from sarfuse.mapping.scene import load_mapper
from sarfuse.mapping.splits import load_split
from sarfuse.mapping.workflow import ProbeConfig, evaluate, open_patches
from sarfuse.runconfig import load_config
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import check_reusable

TINY = PretrainConfig(crop=16, batch=4, width=4, feat_dim=8, steps=2, patch_size=64, device="cpu")
PROBE = ProbeConfig(patch_size=64, epochs=5)
GRID = {"fusions": ["intermediate"], "methods": ["pixel"]}


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _config(labels: list[int], seeds: list[int]) -> ExperimentConfig:
    return ExperimentConfig(
        labels=tuple(labels), seeds=tuple(seeds), pretrain=TINY, probe=PROBE,
        **{k: tuple(v) for k, v in GRID.items()},
    )  # fmt: skip


def _run(data: Path, out: Path, labels: list[int], seeds: list[int]) -> tuple[list[dict], str]:
    log = io.StringIO()
    console = Console(file=log, width=200)
    rows = run_experiment_config(data, out, _config(labels, seeds), console=console)
    return rows, log.getvalue()


@pytest.fixture(scope="module")
def data(synthetic) -> Path:
    """One 256 x 256 DFC2020-style sample: 16 patches of 64 pixels."""
    return synthetic(size=256, seed=0)


@pytest.fixture(scope="module", autouse=True)
def _quick_and_isolated(tmp_path_factory) -> Iterator[None]:
    """Each probe's confusion PNG takes about a second to draw and is tested elsewhere
    (tests/mapping/test_workflow.py): skip drawing it for the dozens of probes here. Also keeps
    the module's superpixel cache in tmp (module fixtures run outside the autouse cache one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sarfuse.plots.plot_confusion", lambda cm, names, path: Path(path))
        mp.setenv("SARFUSE_CACHE", str(tmp_path_factory.mktemp("exp-cache")))
        yield


@pytest.fixture(scope="module")
def experiment(data: Path, tmp_path_factory) -> tuple[Path, list[dict], str]:
    out = tmp_path_factory.mktemp("exp-out")
    rows, log = _run(data, out, labels=[1, 2], seeds=[0, 1])
    return out, rows, log


def test_results_have_the_method_and_both_baselines(experiment) -> None:
    out, rows, log = experiment
    table = _read_csv(out / "results.csv")
    assert len(table) == len(rows) == 3 * 2 * 2  # (pixel, raw, random) x N x seeds
    assert list(table[0])[: len(COLUMNS)] == list(COLUMNS)
    combos = {(r["method"], r["fusion"], r["n_labels"], r["seed"]) for r in table}
    for method, fusion in (("pixel", "intermediate"), ("raw", "-"), ("random", "intermediate")):
        for n in ("1", "2"):
            for seed in ("0", "1"):
                assert (method, fusion, n, seed) in combos
    for r in table:
        assert 0.0 <= float(r["mIoU"]) <= 1.0 and 0.0 <= float(r["OA"]) <= 1.0
        assert any(k.startswith("IoU_") for k in r)
    assert "pretraining intermediate/pixel" in log


def test_the_folder_keeps_the_config_it_ran_with(experiment) -> None:
    out, _, _ = experiment
    assert load_config(out / "config.yaml", ExperimentConfig()) == _config([1, 2], [0, 1])


def test_summary_files_and_figure(experiment) -> None:
    out, rows, _ = experiment
    summary = _read_csv(out / "summary.csv")
    assert len(summary) == 3 * 2 and all(r["seeds"] == "2" for r in summary)
    for entry in summarise(rows):
        group = [
            r["mIoU"]
            for r in rows
            if (r["method"], r["fusion"], r["n_labels"])
            == (entry["method"], entry["fusion"], entry["n_labels"])
        ]
        assert entry["mIoU_mean"] == pytest.approx(sum(group) / len(group))
    markdown = (out / "summary.md").read_text().splitlines()
    assert markdown[0].startswith("| method | fusion | N |")
    assert len(markdown) == 2 + len(summary) and all("±" in line for line in markdown[2:])
    png = out / "miou_vs_labels.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_finished_pretraining_is_reused(data: Path, experiment) -> None:
    out, rows, _ = experiment
    run = out / "pretrain" / "intermediate-pixel"
    assert (run / "done").is_file()
    stamp = (run / "last.ckpt").stat().st_mtime_ns
    again, log = _run(data, out, labels=[1, 2], seeds=[0])
    assert f"reusing {run / 'last.ckpt'}" in log and "pretraining" not in log
    assert (run / "last.ckpt").stat().st_mtime_ns == stamp
    first = {(r["method"], r["n_labels"], r["seed"]): r["mIoU"] for r in rows}
    assert len(again) == 3 * 2
    for r in again:  # same network, same labels (so the same splits): the same scores
        assert r["mIoU"] == pytest.approx(first[(r["method"], r["n_labels"], r["seed"])])


def test_a_pretraining_with_other_settings_is_not_reused(data: Path, experiment) -> None:
    out = experiment[0]
    run = out / "pretrain" / "intermediate-pixel"
    stamp = (run / "last.ckpt").stat().st_mtime_ns
    with pytest.raises(SarfuseError, match=r"s2_bands \('all',\) \(now \('B2', 'B8'\)\)"):
        run_experiment(
            data, out, [1], seeds=[0], pretrain_config=replace(TINY, s2_bands=("B2", "B8")),
            probe_config=PROBE, console=Console(file=io.StringIO()), **GRID,
        )  # fmt: skip
    assert (run / "last.ckpt").stat().st_mtime_ns == stamp
    # where and how fast it trains is no setting of what it learns
    check_reusable(run, replace(TINY, fusion="intermediate", method="pixel", workers=1))


@pytest.mark.parametrize("method", ["random", "pixel"])
def test_probes_map_as_they_were_scored(data: Path, experiment, method: str) -> None:
    """Each probe folder reproduces its score through the mapping loader: the random baseline
    of seed 1 must carry the random network it was trained on."""
    out, rows, _ = experiment
    probe_dir = out / "probes" / f"{method}-intermediate" / "n2-s1"
    clf, meta, maker = load_mapper(probe_dir, None)
    source = discover(data)
    patches = open_patches(source, meta["contract"], replace(PROBE, indices=tuple(meta["indices"])))
    split = load_split(probe_dir / "split.json")
    cm, _ = evaluate(clf, PatchFeatures(patches, maker), split.eval, len(source.scheme.classes))
    row = next(r for r in rows if (r["method"], r["n_labels"], r["seed"]) == (method, 2, 1))
    assert scores(cm)["mIoU"] == pytest.approx(row["mIoU"], abs=1e-6)


def test_model_grid_skips_pairs_a_sensor_set_cannot_run() -> None:
    assert model_grid(["early", "late"], ["pixel"], ("s1", "s2")) == [
        ("early", "pixel"),
        ("late", "pixel"),
    ]
    assert model_grid(["early", "late"], ["pixel"], ("s2",)) == [("early", "pixel")]
    with pytest.raises(SarfuseError, match="no valid fusion"):
        model_grid(["late"], ["pixel"], ("s1",))


def test_blocked_splits_are_shared_by_every_model(data: Path, experiment, tmp_path) -> None:
    """``--split-mode blocks``: every model and N of a seed is scored on the same patches, away
    from the training blocks (the finished pretraining of the fixture is reused)."""
    import json
    import shutil

    out, _, _ = experiment
    shutil.copytree(out / "pretrain", tmp_path / "pretrain")
    blocks = replace(PROBE, split_mode="blocks", block_size=128, buffer=0)
    run_experiment(
        data, tmp_path, [1, 2], seeds=[0], pretrain_config=TINY, probe_config=blocks,
        console=Console(file=io.StringIO()), **GRID,
    )  # fmt: skip
    splits = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("probes/*/n*-s0/split.json"))]
    assert len(splits) == 3 * 2  # (pixel, raw, random) x N
    assert all(s["mode"] == "blocks" for s in splits)
    assert all(s["eval_keys"] == splits[0]["eval_keys"] for s in splits)
    trained = {(k["file"], tuple(k["window"])) for s in splits for k in s["train_keys"]}
    evaluated = {(k["file"], tuple(k["window"])) for k in splits[0]["eval_keys"]}
    assert trained and evaluated and not trained & evaluated
