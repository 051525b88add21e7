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
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.splits import few_label_split
from sarfuse.mapping.workflow import (
    DEFAULT_INDICES,
    ProbeConfig,
    open_patches,
    patch_labels,
    run_probe,
)
from sarfuse.runtime import quiet_lightning
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

CHIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen1floods11"


def water_iou(result: dict) -> float:
    return float(result["per_class"][list(result["per_class"])[-1]]["iou"])


def _overrides(pairs: list[str]) -> dict:
    """``KEY=JSON`` pairs (a bare word is taken as a string) -> dict."""
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/sen1floods11"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fusion", default="intermediate")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=JSON",
        help='pretraining config overrides, e.g. s2_bands=\'["B2","B11"]\' width=32',
    )
    parser.add_argument(
        "--probe-set",
        nargs="*",
        default=[],
        metavar="KEY=JSON",
        help="linear probe config overrides, e.g. epochs=100",
    )
    args = parser.parse_args()
    if not CHIP.is_dir():
        raise SystemExit(f"{CHIP}: the real samples are not here (dev workspace only)")
    source = discover(CHIP)
    t0 = time.perf_counter()
    run = args.out / f"pretrain-{args.fusion}"
    if not (run / "last.ckpt").exists():
        cfg = PretrainConfig.from_dict(
            {"fusion": args.fusion, "steps": args.steps, "patch_size": 128,
             "crops_per_patch": 64, **_overrides(args.set)}
        )  # fmt: skip
        quiet_lightning()
        pretrain(CHIP, run, cfg, progress=False)
    t_pre = time.perf_counter() - t0
    ckpt = run / "last.ckpt"

    probe_cfg = ProbeConfig(labels=4, patch_size=64)
    maker, contract = feature_setup("raw", source, None)
    labels = patch_labels(open_patches(source, contract, probe_cfg), progress=False)
    setups = {
        "pretrained+indices (linear)": ("pretrained", "linear", ckpt, DEFAULT_INDICES),
        "raw bands+NDWI (rf)": ("raw", "rf", None, ("ndwi",)),
        "raw bands+NDWI (linear)": ("raw", "linear", None, ("ndwi",)),
    }
    rows = []
    for name, (kind, clf, ck, indices) in setups.items():
        cfg = ProbeConfig(
            labels=4, patch_size=64, features=kind, classifier=clf, indices=indices,
            **(_overrides(args.probe_set) if clf == "linear" else {}),
        )  # fmt: skip
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
    mapped = map_chip(source, args.out / "probes" / "pretrained+indices" / "linear-s0", args.out)
    (args.out / "results.json").write_text(json.dumps({"probes": rows, "map": mapped}, indent=2))


def map_chip(source, probe_dir: Path, out: Path) -> dict:
    """Map the whole chip with a probe; check the map's grid against the chip's and score it."""
    import rasterio

    from sarfuse.data.raster import read_label

    sample = source.samples[0]
    map_path = out / "map.tif"
    map_files(probe_dir, map_path, s1=sample.s1, s2=sample.s2, progress=False, label=sample.label)
    with rasterio.open(sample.s2) as ref, rasterio.open(map_path) as got:
        same_grid = ref.crs == got.crs and ref.transform == got.transform
        same_grid &= (ref.height, ref.width) == (got.height, got.width)
        pred = got.read(1)
    truth = read_label(sample.label, source.scheme)
    known = truth != 255
    inter = np.sum((pred == 1) & (truth == 1) & known)
    union = np.sum(((pred == 1) | (truth == 1)) & known)
    result = {"map": str(map_path), "same_crs_and_transform": bool(same_grid),
              "water_iou_whole_chip": float(inter / union)}  # fmt: skip
    print(f"\nmap of the chip: {map_path} (quicklook {map_path.with_suffix('.png')})")
    print(f"same CRS, transform and size as the chip: {same_grid}")
    print(f"water IoU over the whole chip (4 training patches included): {inter / union:.3f}")
    return result


if __name__ == "__main__":
    main()
