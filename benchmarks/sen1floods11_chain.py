"""The full chain on the real Sen1Floods11 chip (water / not water), against a random forest.

Pretrain on the chip without labels, probe with 4 labelled 64x64 patches, map the chip; compare
the water IoU of the pretrained fused features (linear probe) with a random forest on the raw
S1+S2 bands and NDWI trained on the same patches, for 5 seeds. Needs ../shared/data.

    python benchmarks/sen1floods11_chain.py [--steps 300] [--out runs/sen1floods11]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sarfuse.data.layouts import discover
from sarfuse.mapping.features import PatchFeatures, feature_setup
from sarfuse.mapping.splits import few_label_split
from sarfuse.mapping.workflow import ProbeConfig, open_patches, patch_labels, run_probe
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

CHIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen1floods11"


def water_iou(result: dict) -> float:
    return float(result["per_class"][list(result["per_class"])[-1]]["iou"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/sen1floods11"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fusion", default="intermediate")
    args = parser.parse_args()
    if not CHIP.is_dir():
        raise SystemExit(f"{CHIP}: the real samples are not here (dev workspace only)")
    source = discover(CHIP)
    t0 = time.perf_counter()
    run = args.out / f"pretrain-{args.fusion}"
    if not (run / "last.ckpt").exists():
        cfg = PretrainConfig(
            fusion=args.fusion, steps=args.steps, patch_size=128, crops_per_patch=64
        )
        pretrain(CHIP, run, cfg, progress=False)
    t_pre = time.perf_counter() - t0
    ckpt = run / "last.ckpt"

    probe_cfg = ProbeConfig(labels=4, patch_size=64)
    maker, contract = feature_setup("raw", source, None)
    labels = patch_labels(open_patches(source, contract, probe_cfg), progress=False)
    setups = {
        "pretrained+indices (linear)": ("pretrained", "linear", ckpt, ProbeConfig.indices),
        "raw bands+NDWI (rf)": ("raw", "rf", None, ("ndwi",)),
        "raw bands+NDWI (linear)": ("raw", "linear", None, ("ndwi",)),
    }
    rows = []
    for name, (kind, clf, ck, indices) in setups.items():
        cfg = ProbeConfig(labels=4, patch_size=64, features=kind, classifier=clf, indices=indices)
        maker, contract = feature_setup(kind, source, ck)
        feats = PatchFeatures(open_patches(source, contract, cfg), maker, cache=True)
        for seed in range(args.seeds):
            split = few_label_split(labels, 4, seed, num_classes=2)
            cfg_s = ProbeConfig(**{**cfg.__dict__, "seed": seed})
            out = args.out / "probes" / name.split()[0] / f"{clf}-s{seed}"
            result = run_probe(source, out, cfg_s, ck, split=split, features=feats, progress=False)
            rows.append({"setup": name, "seed": seed, "water_iou": water_iou(result),
                         "mIoU": result["mIoU"], "OA": result["OA"]})  # fmt: skip
            print(f"{name:32s} seed {seed}: water IoU {rows[-1]['water_iou']:.3f}")
    print(f"\npretraining: {t_pre:.0f} s ({args.steps} steps)\n")
    print(f"{'setup':32s} water IoU mean +- std (per seed)")
    for name in setups:
        v = np.array([r["water_iou"] for r in rows if r["setup"] == name])
        print(f"{name:32s} {v.mean():.3f} +- {v.std():.3f}  {np.round(v, 3).tolist()}")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
