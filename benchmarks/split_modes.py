"""Random against spatially blocked splits: how much a random split flatters a few-label probe.

Probes the same features with the same classifier on ``random`` and ``blocks`` splits (several
seeds) and writes a CSV, a Markdown table and a bar chart of mIoU per split mode. Defaults: the
embedded demo data, raw bands + indices, a linear probe.

    python benchmarks/split_modes.py [DATA] [--labels 10] [--seeds 5] [--out runs/split-modes]
        [--checkpoint RUN/last.ckpt --features pretrained] [--patch-size 64]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from sarfuse.io_utils import atomic_write_csv, atomic_write_text
from sarfuse.mapping.features import PatchFeatures, feature_setup
from sarfuse.mapping.workflow import ProbeConfig, open_patches, patch_labels, run_probe
from sarfuse.ssl.train import resolve_source

MODES = ("random", "blocks")


def run(args: argparse.Namespace) -> list[dict]:
    """One probe per (mode, seed) on features computed once."""
    source = resolve_source(args.data, args.classes)
    cfg = ProbeConfig(
        labels=args.labels, patch_size=args.patch_size, features=args.features,
        classifier=args.classifier, device="cpu", self_train=False,
    )  # fmt: skip
    maker, contract = feature_setup(args.features, source, args.checkpoint, 0, "cpu")
    features = PatchFeatures(open_patches(source, contract, cfg), maker, cache=True)
    labels = patch_labels(features.patches, progress=False)
    rows = []
    for mode in MODES:
        for seed in range(args.seeds):
            probe_cfg = replace(cfg, split_mode=mode, seed=seed)
            out = args.out / f"{mode}-s{seed}"
            result = run_probe(
                source, out, probe_cfg, args.checkpoint, labels=labels, features=features,
                progress=False,
            )  # fmt: skip
            rows.append(
                {"mode": mode, "seed": seed, "mIoU": result["mIoU"], "OA": result["OA"],
                 "eval_patches": result["eval_patches"]}
            )  # fmt: skip
            print(f"{mode:>6} seed {seed}: mIoU {result['mIoU']:.3f} on {result['eval_patches']}")
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for mode in MODES:
        scores = np.array([r["mIoU"] for r in rows if r["mode"] == mode])
        evals = [r["eval_patches"] for r in rows if r["mode"] == mode]
        out.append({"mode": mode, "mIoU_mean": float(scores.mean()),
                    "mIoU_std": float(scores.std()),
                    "eval_patches": f"{min(evals)}-{max(evals)}"})  # fmt: skip
    return out


def plot(table: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.2), dpi=120)
    means = [t["mIoU_mean"] for t in table]
    ax.bar([t["mode"] for t in table], means, yerr=[t["mIoU_std"] for t in table], capsize=6,
           color=["#9ecae1", "#3182bd"])  # fmt: skip
    for x, m in enumerate(means):
        ax.text(x, m / 2, f"{m:.3f}", ha="center", color="black")
    ax.set_ylabel("mIoU (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=None)
    parser.add_argument("--classes", default=None)
    parser.add_argument("--labels", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--features", default="raw")
    parser.add_argument("--classifier", default="linear")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/split-modes"))
    args = parser.parse_args()
    rows = run(args)
    table = summary(rows)
    atomic_write_csv(args.out / "split_modes.csv", rows, list(rows[0]))
    lines = ["| split | mIoU | eval patches |", "|---|---|---|"]
    lines += [f"| {t['mode']} | {t['mIoU_mean']:.3f} ± {t['mIoU_std']:.3f} | "
              f"{t['eval_patches']} |" for t in table]  # fmt: skip
    atomic_write_text(args.out / "split_modes.md", "\n".join(lines) + "\n")
    name = Path(args.data).name if args.data else "demo"
    title = f"{name}: {args.features} + {args.classifier}, N={args.labels}, {args.seeds} seeds"
    plot(table, title, args.out / "split_modes.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
