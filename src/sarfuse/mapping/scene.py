"""``sarfuse map``: a land-cover map of a whole scene from a pretrained network and a probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from sarfuse.checkpoint import Pretrained, load_pretrained
from sarfuse.data.layouts import DataSource, Sample
from sarfuse.data.schemes import ClassScheme
from sarfuse.errors import SarfuseError
from sarfuse.mapping.features import TRAINED_ON_SPLIT, FeatureMaker
from sarfuse.mapping.inference import map_scene
from sarfuse.mapping.probe import load_classifier, predict_proba
from sarfuse.mapping.workflow import ProbeConfig, open_patches
from sarfuse.models.folding import fold_batchnorm

GDAL_CACHE_BYTES = 128 * 2**20  # GDAL block cache while mapping (bytes: small ints mean MB)


def _same_contract(a: dict, b: dict) -> bool:
    keys = ("sensors", "s1_bands", "s2_bands", "stats")
    return all(a.get(k) == b.get(k) for k in keys)


def load_mapper(probe_dir: str | Path, checkpoint: str | Path | None, device: str = "cpu"):
    """The probe's classifier, its metadata and a feature maker that matches its training."""
    probe_path = Path(probe_dir)
    probe_path = probe_path / "probe.pt" if probe_path.is_dir() else probe_path
    clf, meta = load_classifier(probe_path)
    kind = meta["features"]
    if kind in TRAINED_ON_SPLIT:
        raise SarfuseError(
            probe_path,
            f"this probe was trained on {kind} features, whose network is not kept: "
            "map with a probe of pretrained or raw features",
        )
    if kind == "raw" and checkpoint is not None:
        raise SarfuseError(
            probe_path,
            "this probe was trained on raw bands, not network features: drop --checkpoint",
        )
    ckpt = checkpoint or meta.get("checkpoint")
    net = None
    if kind != "raw":
        if ckpt is None:
            raise SarfuseError(
                probe_path, "this probe was trained on network features: pass --checkpoint"
            )
        net = load_pretrained(ckpt)
        if not _same_contract(net.contract, meta["contract"]):
            raise SarfuseError(
                ckpt,
                f"this checkpoint does not match the probe in {probe_path} (it was trained "
                "on features of another network: other sensors, bands or normalisation)",
            )
        if kind == "random":
            net = net.randomised(meta.get("seed", 0))
        net = for_inference(net)
    return clf, meta, FeatureMaker(kind, net, device)


def for_inference(net: Pretrained) -> Pretrained:
    """A copy of ``net`` for mapping: BatchNorm folded into the convolutions, channels-last."""
    model = fold_batchnorm(net.model).to(memory_format=torch.channels_last)
    return Pretrained(model, net.contract, net.path)


def map_files(
    probe_dir: str | Path,
    out: str | Path,
    s1: str | Path | None = None,
    s2: str | Path | None = None,
    checkpoint: str | Path | None = None,
    tile: int = 512,
    overlap: int = 64,
    probabilities: bool = False,
    device: str = "cpu",
    progress: bool = True,
    quicklook: bool = True,
    label: str | Path | None = None,
    batch_tiles: int = 4,
) -> dict:
    """Map the scene given by its S1 and/or S2 GeoTIFF to a classified GeoTIFF at ``out``.

    ``label``, a label GeoTIFF of the scene, is only shown beside the map in the quicklook.
    ``batch_tiles`` tiles go through the network in one call (more uses a GPU better; memory
    grows with it, not with the scene).
    """
    clf, meta, maker = load_mapper(probe_dir, checkpoint, device)
    contract = meta["contract"]
    scheme = ClassScheme.from_json(meta["scheme"])
    if s1 is None and s2 is None:
        raise SarfuseError(None, "give the scene as --s1 and/or --s2")
    sample = Sample(Path(s1 or s2).stem, s1=Path(s1) if s1 else None, s2=Path(s2) if s2 else None)
    for sensor in contract["sensors"]:
        if sample.get(sensor) is None:
            raise SarfuseError(None, f"the probe's features need {sensor.upper()}: pass --{sensor}")
    source = DataSource("scene", [sample], None, Path(out).parent)
    cfg = ProbeConfig(patch_size=tile, indices=tuple(meta["indices"]))
    reader = open_patches(source, contract, cfg)
    info = reader.grid(0)
    if tile % 8 or overlap >= tile // 2:
        raise SarfuseError(
            None, f"--tile must be a multiple of 8 and --overlap < tile/2, got {tile}, {overlap}"
        )

    def read_fn(window: tuple[int, int, int, int]) -> dict:
        row, col, h, w = window
        return reader.read_window(0, Window(col, row, w, h))

    def predict_many(tiles: list[dict]) -> np.ndarray:
        keys = [k for k, v in tiles[0].items() if isinstance(v, torch.Tensor)]
        batch = {k: torch.stack([t[k] for t in tiles]) for k in keys}  # (N, C, h, w)
        with torch.inference_mode():
            return predict_proba(clf, maker(batch)).numpy()

    def predict_fn(inputs: dict) -> np.ndarray:
        return predict_many([inputs])[0]

    out = Path(out)
    # GDAL keeps decoded blocks until a file closes, up to 5% of RAM: capped, so that memory
    # stays flat in scene size while the inputs stay open for the whole map.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        result = map_scene(
            predict_fn,
            read_fn,
            info,
            out,
            len(scheme.classes),
            tile=tile,
            overlap=overlap,
            colormap=scheme.colormap(),
            class_names=list(scheme.names),
            probabilities_path=out.with_name(out.stem + "_proba.tif") if probabilities else None,
            progress=progress,
            predict_many=predict_many,
            batch_tiles=batch_tiles,
        )
    if not any(result["class_pixels"].values()):  # whole-file reads refuse this, windows cannot
        raise SarfuseError(
            ", ".join(str(p) for p in (s1, s2) if p is not None),
            f"no valid pixel (all NaN or nodata), so {out} is nodata everywhere",
        )
    if quicklook:
        label = Path(label) if label is not None else None
        result["quicklook"] = str(write_quicklook(out, scheme, sample, label))
    return result


def write_quicklook(
    map_path: Path,
    scheme: ClassScheme,
    sample: Sample,
    label: Path | None = None,
    max_side: int = 1024,
) -> Path:
    """PNG next to the map: the map with a legend, beside RGB / SAR quicklooks and true labels."""
    import rasterio
    from rasterio.enums import Resampling

    from sarfuse.data.raster import read_label, read_s1, read_s2
    from sarfuse.plots import plot_map_quicklook, rgb_quicklook, sar_quicklook

    with rasterio.open(map_path) as src:
        step = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
        shape = (src.height // step or 1, src.width // step or 1)
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    panels = []
    # Quicklooks are read whole: fine up to a few thousand pixels; larger scenes are decimated.
    if sample.s2 is not None and max(shape) * step <= 4 * max_side:
        s2, _ = read_s2(sample.s2, ("B4", "B3", "B2"))
        panels.append(("Sentinel-2 RGB", rgb_quicklook(s2[:, ::step, ::step], ("B4", "B3", "B2"))))
    if sample.s1 is not None and max(shape) * step <= 4 * max_side:
        s1, _ = read_s1(sample.s1)
        panels.append(("Sentinel-1 VV", sar_quicklook(s1[:, ::step, ::step])))
    if label is not None:
        panels.append(("true labels", read_label(label, scheme)[::step, ::step]))
    png = map_path.with_suffix(".png")
    colors = [c.color for c in scheme.classes]
    return plot_map_quicklook(
        classes, colors, list(scheme.names), png, "sarfuse map", extra_panels=panels
    )
