"""``sarfuse experiment``: the paper's few-label experiment (mIoU against labelled patches).

Each (fusion, method) is pretrained once (or reused), then probed at every N and seed on the same
splits, beside the ``raw`` (bands + indices) and ``random`` (untrained network) baselines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.data.validate import labels_name
from sarfuse.errors import SarfuseError, naming
from sarfuse.io_utils import atomic_write_csv, atomic_write_text
from sarfuse.lock import output_lock
from sarfuse.mapping.features import PatchFeatures, feature_setup
from sarfuse.mapping.spatial import draw_split
from sarfuse.mapping.workflow import (
    ProbeConfig,
    block_spec,
    open_patches,
    patch_boxes,
    patch_labels,
    run_probe,
)
from sarfuse.models.fusion import FUSIONS
from sarfuse.runtime import resolve_source
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import valid_combinations

COLUMNS = ("method", "fusion", "n_labels", "seed", "OA", "AA", "kappa", "mIoU")


def model_grid(
    fusions: list[str], methods: list[str], sensors: tuple[str, ...]
) -> list[tuple[str, str]]:
    """The (fusion, method) pairs of the grid that can run on these sensors, in grid order."""
    allowed = {(f, m) for f, m in valid_combinations() if f == "early" or len(sensors) == 2}
    grid = [(f, m) for m in methods for f in fusions if (f, m) in allowed]
    if not grid:
        raise SarfuseError(
            None, f"no valid fusion x method pair in {fusions} x {methods} for {sensors}"
        )
    return grid


PAPER_METHODS = ("pixel", "mcl", "dcca")  # the methods the paper compares (names in METHODS)
EXPERIMENT_STEPS = 150  # pretraining steps per model of the default grid


def _experiment_pretrain() -> PretrainConfig:
    return PretrainConfig(steps=EXPERIMENT_STEPS)


@dataclass
class ExperimentConfig:
    """The grid of ``sarfuse experiment``; saved as config.yaml in the experiment folder."""

    labels: tuple[int, ...] = (10, 50)  # labelled patch counts N
    fusions: tuple[str, ...] = tuple(FUSIONS)  # fusions to compare
    methods: tuple[str, ...] = PAPER_METHODS  # pretraining methods to compare
    seeds: tuple[int, ...] = (0, 1, 2)  # seeds of the splits and probes
    n_eval: int | None = None  # fixed evaluation patches (None: as many as every N leaves)
    pretrain: PretrainConfig = field(default_factory=_experiment_pretrain)  # fusion/method: grid
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # labels/seed/features: the grid


def run_experiment_config(
    data, out: str | Path, cfg: ExperimentConfig, console: Console | None = None,
    classes: str | Path | None = None,
) -> list[dict]:  # fmt: skip
    """:func:`run_experiment` of ``cfg``, after saving it as ``out/config.yaml``."""
    from sarfuse.runconfig import save_config

    with output_lock(out):  # before the config is saved: a running experiment keeps its own
        save_config(cfg, Path(out) / "config.yaml")
        return run_experiment(
            data, out, list(cfg.labels), list(cfg.fusions), list(cfg.methods), list(cfg.seeds),
            cfg.pretrain, cfg.probe, n_eval=cfg.n_eval, console=console, classes=classes,
        )  # fmt: skip


def run_experiment(
    data,
    out: str | Path,
    labels: list[int],
    fusions: list[str],
    methods: list[str],
    seeds: list[int],
    pretrain_config: PretrainConfig,
    probe_config: ProbeConfig,
    n_eval: int | None = None,
    console: Console | None = None,
    classes: str | Path | None = None,
) -> list[dict]:
    """Run the grid; write results.csv, summary.csv/.md and miou_vs_labels.png under ``out``
    (locked while the experiment runs)."""
    out = Path(out)
    with output_lock(out):
        say = (console or Console(stderr=True)).print
        source = resolve_source(data, classes, s2_offset=probe_config.s2_offset)
        if source.scheme is None or not source.has_labels:
            raise SarfuseError(source.root, "the experiment needs labels, and this data has none")
        grid = model_grid(fusions, methods, source.sensors)
        checkpoints = _pretrain_grid(data, out, grid, pretrain_config, say)
        first_ckpt = next(iter(checkpoints.values()))
        models = [(m, f, "pretrained", c) for (f, m), c in checkpoints.items()]
        models += [("raw", "-", "raw", None), ("random", grid[0][0], "random", first_ckpt)]
        splits = _SplitDrawer(source, probe_config, labels, n_eval)
        rows: list[dict] = []
        for model in models:
            rows += _probe_model(source, out, model, seeds, labels, probe_config, splits, say)
            write_results(rows, out)
        return rows


def _pretrain_grid(data, out: Path, grid, pretrain_config: PretrainConfig, say) -> dict:
    """Pretrain each (fusion, method) of the grid once (a finished run is reused when it was
    trained with the same settings); returns their checkpoints."""
    from sarfuse.ssl.train import check_reusable, pretrain  # Lightning: only when training

    checkpoints: dict[tuple[str, str], Path] = {}
    for fusion, method in grid:
        run_dir = out / "pretrain" / f"{fusion}-{method}"
        ckpt = run_dir / "last.ckpt"
        cfg = replace(pretrain_config, fusion=fusion, method=method)
        if (run_dir / "done").exists():
            check_reusable(run_dir, cfg)
            say(f"reusing {ckpt}")
        else:
            say(f"pretraining {fusion}/{method} -> {run_dir}")
            pretrain(data, run_dir, cfg, resume=ckpt.exists())
            (run_dir / "done").write_text("ok\n")
        checkpoints[(fusion, method)] = ckpt
    return checkpoints


class _SplitDrawer:
    """Splits depend only on the labels: read them once, shared by every model."""

    def __init__(self, source, cfg: ProbeConfig, labels: list[int], n_eval: int | None) -> None:
        _, contract = feature_setup("raw", source, None)
        reader = open_patches(source, contract, cfg)
        self.patches, self.boxes = patch_labels(reader), patch_boxes(reader)
        self.source, self.cfg, self.k = source, cfg, len(source.scheme.classes)
        if n_eval is None and cfg.split_mode == "random":  # blocks: fixed by the blocks
            labelled = [x for x in self.patches if (x != IGNORE_INDEX).any()]
            n_eval = max(1, len(labelled) - max(labels) - 1)
        self.n_eval = n_eval

    def draw(self, n: int, seed: int):
        cfg = self.cfg
        with naming(labels_name(self.source)):
            return draw_split(
                self.patches, self.boxes, n, seed, cfg.split_mode, block_spec(cfg), self.n_eval,
                self.k,
            )  # fmt: skip


def _probe_model(source, out: Path, model, seeds, labels, probe_config, splits, say) -> list:
    """The rows of one model: a probe at every seed and N, on the shared splits."""
    name, fusion, kind, ckpt = model
    rows, feats = [], None
    for seed in seeds:
        if feats is None or kind == "random":  # one random network per seed, as its probe
            maker, contract = feature_setup(kind, source, ckpt, seed, probe_config.device)
            patches = open_patches(source, contract, probe_config)
            feats = PatchFeatures(patches, maker, cache=True)
        for n in labels:
            cfg = replace(probe_config, labels=n, seed=seed, features=kind)
            if cfg.classifier == "auto":  # rows compare features: one classifier for all
                cfg = replace(cfg, classifier="linear")
            probe_dir = out / "probes" / f"{name}-{fusion}" / f"n{n}-s{seed}"
            result = run_probe(
                source, probe_dir, cfg, ckpt, split=splits.draw(n, seed), features=feats,
                progress=False,
            )  # fmt: skip
            rows.append(_row(name, fusion, n, seed, result))
            say(f"{name:>8} {fusion:>12} N={n:<5} seed={seed}  mIoU={rows[-1]['mIoU']:.3f}")
    return rows


def _row(name: str, fusion: str, n: int, seed: int, result: dict) -> dict:
    return {
        "method": name,
        "fusion": fusion,
        "n_labels": n,
        "seed": seed,
        **{m: result[m] for m in ("OA", "AA", "kappa", "mIoU")},
        **{f"IoU_{c}": v["iou"] for c, v in result["per_class"].items()},
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std of each metric over seeds, per (method, fusion, N)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["fusion"], r["n_labels"]), []).append(r)
    table = []
    for (method, fusion, n), rs in groups.items():
        entry = {"method": method, "fusion": fusion, "n_labels": n, "seeds": len(rs)}
        for m in ("OA", "AA", "kappa", "mIoU"):
            values = np.array([r[m] for r in rs], dtype=float)
            entry[f"{m}_mean"], entry[f"{m}_std"] = float(values.mean()), float(values.std())
        table.append(entry)
    return table


def write_results(rows: list[dict], out: Path) -> None:
    from sarfuse.plots import plot_miou_vs_labels

    columns = list(COLUMNS) + sorted({k for r in rows for k in r} - set(COLUMNS))
    atomic_write_csv(out / "results.csv", rows, columns)
    table = summarise(rows)
    atomic_write_csv(out / "summary.csv", table, list(table[0]))
    lines = ["| method | fusion | N | OA | AA | kappa | mIoU |", "|---|---|---|---|---|---|---|"]
    for t in table:
        cells = " | ".join(
            f"{t[m + '_mean']:.3f} ± {t[m + '_std']:.3f}" for m in ("OA", "AA", "kappa", "mIoU")
        )
        lines.append(f"| {t['method']} | {t['fusion']} | {t['n_labels']} | {cells} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2))
    plot_miou_vs_labels(
        [
            {
                "method": r["method"],
                "fusion": r["fusion"],
                "n_labels": r["n_labels"],
                "miou": r["mIoU"],
            }
            for r in rows
        ],
        out / "miou_vs_labels.png",
    )
