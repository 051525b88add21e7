"""Random against spatially blocked splits: how much a random split flatters a few-label probe.

Probes the same features with the same classifier on ``random`` and ``blocks`` splits (several
seeds) and writes a CSV, a Markdown table and a bar chart of mIoU per split mode. The two modes
score different patches (a random split every other labelled patch, ``blocks`` only those of
the evaluation blocks outside the buffer), so a third row, ``random@blocks``, trains on a random
draw from every patch but the blocks' evaluation patches and scores on exactly those: against
``blocks`` it isolates what training next to the evaluation patches is worth. Defaults: the
embedded demo data, raw bands + indices, a linear probe.

    python benchmarks/split_modes.py [DATA] [--labels 10] [--seeds 5] [--out runs/split-modes]
        [--checkpoint RUN/last.ckpt --features pretrained] [--patch-size 64]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.io_utils import atomic_write_csv, atomic_write_text
from sarfuse.mapping import workflow
from sarfuse.mapping.features import PatchFeatures, feature_setup
from sarfuse.mapping.spatial import draw_split
from sarfuse.mapping.splits import Split, few_label_split
from sarfuse.mapping.workflow import ProbeConfig, block_spec, run_probe
from sarfuse.runtime import resolve_source

MODES = ("random", "blocks", "random@blocks")


def _split(labels, boxes, mode: str, cfg: ProbeConfig, k: int) -> Split:
    """The split of ``mode``; ``random@blocks``: random training, the blocks' evaluation."""
    if mode != "random@blocks":
        return draw_split(labels, boxes, cfg.labels, cfg.seed, mode, block_spec(cfg), None, k)  # type: ignore[arg-type]
    blocks = draw_split(labels, boxes, cfg.labels, cfg.seed, "blocks", block_spec(cfg), None, k)
    held = set(blocks.eval)
    others = [np.full_like(x, IGNORE_INDEX) if i in held else x for i, x in enumerate(labels)]
    train = few_label_split(others, cfg.labels, cfg.seed, None, k).train
    return Split(train=train, eval=blocks.eval)


def run(args: argparse.Namespace) -> list[dict]:
    """One probe per (mode, seed) on features computed once."""
    source = resolve_source(args.data, args.classes)
    cfg = ProbeConfig(
        labels=args.labels, patch_size=args.patch_size, features=args.features,
        classifier=args.classifier, device="cpu", self_train=False,
        block_size=args.block_size, buffer=args.buffer,
    )  # fmt: skip
    maker, contract = feature_setup(args.features, source, args.checkpoint, 0, "cpu")
    features = PatchFeatures(workflow.open_patches(source, contract, cfg), maker, cache=True)
    labels = workflow.patch_labels(features.patches, progress=False)
    boxes, k = workflow.patch_boxes(features.patches), len(source.scheme.classes)
    rows = []
    for mode in MODES:
        for seed in range(args.seeds):
            probe_cfg = replace(cfg, seed=seed)
            split = _split(labels, boxes, mode, probe_cfg, k)
            result = run_probe(
                source, args.out / f"{mode}-s{seed}", probe_cfg, args.checkpoint, split=split,
                features=features, progress=False,
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
           color=["#9ecae1", "#3182bd", "#c6dbef"])  # fmt: skip
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
    parser.add_argument("--block-size", type=int, default=None, help="pixels (default 4 patches)")
    parser.add_argument("--buffer", type=int, default=None, help="pixels (default 1 patch)")
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
    spec = block_spec(replace(ProbeConfig(patch_size=args.patch_size), block_size=args.block_size,
                              buffer=args.buffer))  # fmt: skip
    title = (f"{name}: {args.features} + {args.classifier}, N={args.labels}, {args.seeds} seeds\n"
             f"blocks of {spec.block} px, {spec.buffer} px buffer")  # fmt: skip
    plot(table, title, args.out / "split_modes.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
