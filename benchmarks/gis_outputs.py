"""The GIS outputs on the real Sen1Floods11 chip: a COG map with overviews and category names,
and the exported ONNX model against sarfuse's own probabilities. Needs ../shared/data.

Pretrains briefly on the chip (no labels), probes ``pretrained+raw`` features with 4 labelled
64 x 64 patches, maps the chip (class COG + probability COG + side files), reads everything
back through rasterio/GDAL and prints it; then exports the probe to ONNX and compares
onnxruntime's probabilities on a 256 x 256 tile of the chip with sarfuse's.

    python benchmarks/gis_outputs.py [--steps 30] [--out runs/gis_outputs]
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from sarfuse.data.layouts import discover
from sarfuse.data.raster import read_s1, read_s2
from sarfuse.export import export_onnx
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.probe import predict_proba
from sarfuse.mapping.scene import load_mapper, map_files
from sarfuse.mapping.workflow import ProbeConfig, open_patches, run_probe
from sarfuse.runtime import quiet_lightning
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

CHIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sen1floods11"
TILE = 256


def train(out: Path, steps: int) -> Path:
    """A short pretraining and a pretrained+raw linear probe on the chip; the probe folder."""
    run = out / "pretrain"
    if not (run / "last.ckpt").exists():
        quiet_lightning()
        pretrain(CHIP, run, PretrainConfig(steps=steps, patch_size=128), progress=False)
    cfg = ProbeConfig(labels=4, patch_size=64, features="pretrained+raw", classifier="linear")
    result = run_probe(discover(CHIP), out / "probe", cfg, run / "last.ckpt", progress=False)
    print(f"probe: mIoU {result['mIoU']:.3f} on {result['eval_patches']} held-out patches")
    return out / "probe"


def show_map(probe: Path, out: Path) -> dict:
    """Map the chip and print what a GIS reads back from the files."""
    from rio_cogeo.cogeo import cog_validate

    sample = discover(CHIP).samples[0]
    tiles = MapConfig(probabilities=True)
    result = map_files(probe, out / "map.tif", s1=sample.s1, s2=sample.s2, config=tiles,
                       progress=False, label=sample.label)  # fmt: skip
    facts = {}
    for key in ("path", "probabilities"):
        valid, errors, warnings = cog_validate(result[key], quiet=True)
        with rasterio.open(result[key]) as src:
            facts[key] = {
                "cog_valid": valid, "errors": errors, "warnings": warnings,
                "layout": src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
                "overviews": src.overviews(1), "block": src.block_shapes[0],
                "descriptions": src.descriptions,
                "class_names_from_aux_xml": src.tags(1).get("class_names"),
            }  # fmt: skip
    band = ET.parse(result["categories"]).getroot().find("PAMRasterBand")
    facts["aux_xml_categories"] = [c.text for c in band.find("CategoryNames")]
    facts["aux_xml_attribute_rows"] = [
        [f.text for f in row] for row in band.find("GDALRasterAttributeTable").findall("Row")
    ]
    entries = ET.parse(result["style"]).getroot().findall("pipe/rasterrenderer/*/paletteEntry")
    facts["qml_palette"] = [(e.get("value"), e.get("label"), e.get("color")) for e in entries]
    with rasterio.open(result["path"], overview_level=0) as src:
        facts["overview_0_shape_and_values"] = [src.shape, np.unique(src.read(1)).tolist()]
    return facts


def onnx_difference(probe: Path, out: Path) -> dict:
    """Max |onnxruntime - sarfuse| over the valid pixels of a 256 x 256 tile of the chip."""
    import onnxruntime as ort

    window = Window(128, 200, TILE, TILE)
    model = export_onnx(probe, out / "model.onnx", tiling=MapConfig(TILE, 32))
    sample = discover(CHIP).samples[0]
    s1, _ = read_s1(sample.s1, window)
    s2, _ = read_s2(sample.s2, [n.split()[1] for n in model["inputs"][2:]], window)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"bands": np.concatenate([s1, s2])[None].astype(np.float32)})[0][0]
    clf, meta, maker = load_mapper(probe, None)
    cfg = ProbeConfig(patch_size=TILE, indices=tuple(meta["indices"]))
    item = open_patches(discover(CHIP), meta["contract"], cfg).read_window(0, window)
    batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
    want = predict_proba(clf, maker(batch))[0].numpy()
    valid = item["valid"].numpy()
    return {"tile": [window.row_off, window.col_off, TILE, TILE], "inputs": model["inputs"],
            "valid_pixels": int(valid.sum()),
            "max_abs_diff": float(np.abs(got - want)[:, valid].max())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/gis_outputs"))
    args = parser.parse_args()
    if not CHIP.is_dir():
        raise SystemExit(f"{CHIP}: the real samples are not here (dev workspace only)")
    probe = train(args.out, args.steps)
    report = {"map": show_map(probe, args.out), "onnx": onnx_difference(probe, args.out)}
    print(json.dumps(report, indent=1, default=str))
    (args.out / "gis_outputs.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
