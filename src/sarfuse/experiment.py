"""``sarfuse experiment``: the paper's few-label experiment (mIoU against labelled patches).

Each (fusion, method) is pretrained once (or reused), then probed at every N and seed on the same
splits, beside the ``raw`` (bands + indices) and ``random`` (untrained network) baselines.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from sarfuse.data.validate import labels_name
from sarfuse.errors import SarfuseError, naming
from sarfuse.io_utils import atomic_write_csv, atomic_write_text
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
from sarfuse.runtime import resolve_source
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.methods import valid_combinations
from sarfuse.ssl.train import check_reusable, pretrain

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
    """Run the grid; write results.csv, summary.csv/.md and miou_vs_labels.png under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = (console or Console(stderr=True)).print
    source = resolve_source(data, classes, s2_offset=probe_config.s2_offset)
    if source.scheme is None or not source.has_labels:
        raise SarfuseError(source.root, "the experiment needs labels, and this data has none")
    grid = model_grid(fusions, methods, source.sensors)
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

    first_ckpt = next(iter(checkpoints.values()))
    models = [(m, f, "pretrained", c) for (f, m), c in checkpoints.items()]
    models += [("raw", "-", "raw", None), ("random", grid[0][0], "random", first_ckpt)]
    # Splits depend only on the labels: draw them once per seed, shared by every model.
    maker, contract = feature_setup("raw", source, None)
    label_reader = open_patches(source, contract, probe_config)
    label_patches, boxes = patch_labels(label_reader), patch_boxes(label_reader)
    k = len(source.scheme.classes)
    if n_eval is None and probe_config.split_mode == "random":  # blocks: fixed by the blocks
        n_eval = max(1, len([x for x in label_patches if (x != 255).any()]) - max(labels) - 1)
    rows: list[dict] = []
    for name, fusion, kind, ckpt in models:
        feats = None
        for seed in seeds:
            if feats is None or kind == "random":  # one random network per seed, as its probe
                maker, contract = feature_setup(kind, source, ckpt, seed, probe_config.device)
                patches = open_patches(source, contract, probe_config)
                feats = PatchFeatures(patches, maker, cache=True)
            for n in labels:
                with naming(labels_name(source)):
                    split = draw_split(
                        label_patches, boxes, n, seed, probe_config.split_mode,
                        block_spec(probe_config), n_eval, k,
                    )  # fmt: skip
                cfg = replace(probe_config, labels=n, seed=seed, features=kind)
                if cfg.classifier == "auto":  # rows compare features: one classifier for all
                    cfg = replace(cfg, classifier="linear")
                probe_dir = out / "probes" / f"{name}-{fusion}" / f"n{n}-s{seed}"
                result = run_probe(
                    source, probe_dir, cfg, ckpt, split=split, features=feats, progress=False
                )
                row = {
                    "method": name,
                    "fusion": fusion,
                    "n_labels": n,
                    "seed": seed,
                    **{m: result[m] for m in ("OA", "AA", "kappa", "mIoU")},
                    **{f"IoU_{c}": v["iou"] for c, v in result["per_class"].items()},
                }
                rows.append(row)
                say(f"{name:>8} {fusion:>12} N={n:<5} seed={seed}  mIoU={row['mIoU']:.3f}")
        write_results(rows, out)
    return rows


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
