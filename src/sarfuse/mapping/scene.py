"""``sarfuse map``: a land-cover map of a whole scene from a pretrained network and a probe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from sarfuse.checkpoint import Pretrained, load_pretrained
from sarfuse.contract import DataContract
from sarfuse.data.dataset import PatchDataset
from sarfuse.data.indices import available_indices
from sarfuse.data.layouts import DataSource, Sample
from sarfuse.data.products import scene_sample
from sarfuse.data.schemes import ClassScheme
from sarfuse.data.validate import validate_source
from sarfuse.errors import Interrupted, SarfuseError
from sarfuse.io_utils import file_digest, local_stamp
from sarfuse.lock import output_lock
from sarfuse.mapping.cog import publish_map
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.features import TRAINED_ON_SPLIT, FeatureMaker
from sarfuse.mapping.inference import map_scene
from sarfuse.mapping.probe import load_classifier, predict_proba
from sarfuse.models.folding import fold_batchnorm
from sarfuse.runtime import keep_freed_memory, release_freed_memory, resolve_precision

GDAL_CACHE_BYTES = 128 * 2**20  # GDAL block cache while mapping (bytes: small ints mean MB)


def load_mapper(
    probe_dir: str | Path, checkpoint: str | Path | None, device: str = "cpu", precision: str = "32"
):
    """The probe's classifier, its metadata and a feature maker that matches its training
    (its network run in ``precision``, ``32`` or ``bf16``)."""
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
        changes = net.contract.differences(DataContract.from_dict(meta["contract"]))
        if changes:
            raise SarfuseError(
                ckpt,
                f"this checkpoint does not match the probe in {probe_path}, which was trained "
                f"on features of another network ({'; '.join(changes[:2])}, probe vs checkpoint)",
            )
        if kind == "random":
            net = net.randomised(meta.get("seed", 0))
        net = for_inference(net)
    return clf, meta, FeatureMaker(kind, net, device, precision)


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
    config: MapConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
    quicklook: bool = True,
    label: str | Path | None = None,
    s2_offset: float | None = None,
) -> dict:
    """Map the scene given by its S1 and/or S2 GeoTIFF to a classified GeoTIFF at ``out``.

    ``s1`` / ``s2`` may also be a Sentinel-2 ``.SAFE`` product (folder or zip) or a STAC item;
    ``s2_offset`` is added to S2 values when the S2 source does not state its own offset.
    ``config`` sets the tiles and how many go through the network in one call (default:
    :class:`MapConfig`'s; more tiles a call use a GPU better, memory grows with them, not with
    the scene), whether class probabilities are written too, and whether the outputs are Cloud
    Optimized GeoTIFFs with overviews (``cog``, the default). Class names and colours for GIS
    software are written beside the map (:func:`sarfuse.mapping.cog.publish_map`).
    ``label``, a label GeoTIFF of the scene, is only shown beside the map in the quicklook.
    ``out`` is locked while mapping (a second run on it is refused); an interrupted map keeps
    its finished rows and a rerun of the same job (same inputs, probe and checkpoint) resumes.
    """
    job = _MapJob(
        Path(probe_dir), Path(out), s1, s2, checkpoint, config or MapConfig(), device, progress,
        quicklook, label, s2_offset,
    )  # fmt: skip
    with output_lock(out, folder=False):
        try:
            return _map_files(job)
        except KeyboardInterrupt:
            raise _interrupted(Path(out)) from None
        finally:
            release_freed_memory()


@dataclass(frozen=True)
class _MapJob:
    """The arguments of :func:`map_files`."""

    probe_dir: Path
    out: Path
    s1: str | Path | None
    s2: str | Path | None
    checkpoint: str | Path | None
    config: MapConfig
    device: str
    progress: bool
    quicklook: bool
    label: str | Path | None
    s2_offset: float | None


def _interrupted(out: Path) -> Interrupted:
    partial = out.with_name(out.name + ".partial")
    kept = len(list(partial.glob("band_*.npz"))) if partial.is_dir() else 0
    return Interrupted(
        out,
        f"map not finished; {kept} finished band(s) of rows kept in {partial.name}; rerun the "
        "same command to resume",
    )


def _job_key(probe_path: Path, ckpt: str | Path | None, sample: Sample) -> dict:
    """What a map depends on besides its grid: a rerun with other inputs, another probe or
    another checkpoint must start over, never splice its rows onto an earlier job's."""
    inputs = {role: _stamp(sample.get(role)) for role in ("s1", "s2") if sample.get(role)}
    return {
        "inputs": inputs,
        "probe": file_digest(probe_path),
        "checkpoint": None if ckpt is None else file_digest(_ckpt_file(ckpt)),
    }


def _stamp(path) -> list:
    """A local file as (path, size, mtime); a GDAL virtual path or URL as given; a product's
    per-band files (dict) band by band."""
    if isinstance(path, dict):
        return [[band, _stamp(p)] for band, p in sorted(path.items())]
    stamp = local_stamp(path)
    if stamp is None:  # /vsizip/..., /vsicurl/...
        return [str(path)]
    return [str(Path(path).resolve()), *stamp]


def _ckpt_file(ckpt: str | Path) -> Path:
    path = Path(ckpt)
    return path / "last.ckpt" if path.is_dir() else path


def _map_files(job: _MapJob) -> dict:
    """:func:`map_files` once ``out`` is locked."""
    keep_freed_memory()
    precision = resolve_precision(job.config.precision, job.device)
    clf, meta, maker = load_mapper(job.probe_dir, job.checkpoint, job.device, precision)
    scheme = ClassScheme.from_json(meta["scheme"])
    sample, reader = _scene_reader(job, meta)
    probe_path = job.probe_dir / "probe.pt" if job.probe_dir.is_dir() else job.probe_dir
    ckpt = None if maker.net is None else job.checkpoint or meta.get("checkpoint")
    read_fn, predict_fn, predict_many = _tile_functions(reader, clf, maker)
    proba_path = (
        job.out.with_name(job.out.stem + "_proba.tif") if job.config.probabilities else None
    )
    # GDAL keeps decoded blocks until a file closes, up to 5% of RAM: capped, so that memory
    # stays flat in scene size while the inputs stay open for the whole map.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        result = map_scene(
            predict_fn, read_fn, reader.grid(0), job.out, len(scheme.classes), job.config,
            colormap=scheme.colormap(), class_names=list(scheme.names),
            probabilities_path=proba_path, progress=job.progress,
            key={**_job_key(probe_path, ckpt, sample), "precision": precision},
            predict_many=predict_many,
        )  # fmt: skip
    if not any(result["class_pixels"].values()):  # whole-file reads refuse this, windows cannot
        raise SarfuseError(
            ", ".join(str(p) for p in (job.s1, job.s2) if p is not None),
            f"no valid pixel (all NaN or nodata), so {job.out} is nodata everywhere",
        )
    result["precision"] = precision if maker.net is not None else "32"
    result.update(publish_map(job.out, scheme, result["probabilities"], cog=job.config.cog))
    if job.quicklook:
        label = Path(job.label) if job.label is not None else None
        result["quicklook"] = str(write_quicklook(job.out, scheme, sample, label))
    return result


def _scene_reader(job: _MapJob, meta: dict) -> tuple[Sample, PatchDataset]:
    """The scene's sample and a reader of its tiles as the probe's features read them."""
    contract = DataContract.from_dict(meta["contract"])
    s1, s2 = (Path(p) if p else None for p in (job.s1, job.s2))
    sample = scene_sample(s1, s2, job.s2_offset)
    for sensor in contract.sensors:
        if sample.get(sensor) is None:
            raise SarfuseError(None, f"the probe's features need {sensor.upper()}: pass --{sensor}")
    source = validate_source(DataSource("scene", [sample], None, job.out.parent), labels=False)
    indices = available_indices(tuple(meta["indices"]), source.sensors)
    return sample, contract.open_patches(source, patch_size=job.config.tile, indices=indices)


def _tile_functions(reader: PatchDataset, clf, maker: FeatureMaker):
    """``read_fn(window)``, ``predict_fn(inputs)`` and ``predict_many(tiles)`` of map_scene."""

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

    return read_fn, predict_fn, predict_many


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
    from sarfuse.plots import SAR_RANGE_DB, plot_map_quicklook, rgb_quicklook, sar_quicklook

    with rasterio.open(map_path) as src:
        step = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
        shape = (src.height // step or 1, src.width // step or 1)
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    panels = []
    # Quicklooks are read whole: fine up to a few thousand pixels; larger scenes are decimated.
    if sample.s2 is not None and max(shape) * step <= 4 * max_side:
        s2, _ = read_s2(sample.s2, ("B4", "B3", "B2"), offset=sample.s2_offset)
        rgb = rgb_quicklook(s2[:, ::step, ::step], ("B4", "B3", "B2"))
        panels.append(("Sentinel-2 RGB (2-98 % stretch)", rgb))
    if sample.s1 is not None and max(shape) * step <= 4 * max_side:
        s1, _ = read_s1(sample.s1)
        grey = sar_quicklook(s1[:, ::step, ::step])
        panels.append(("Sentinel-1 VV", grey, (*SAR_RANGE_DB, "VV backscatter (dB)")))
    if label is not None:
        panels.append(("true labels", read_label(label, scheme)[::step, ::step]))
    png = map_path.with_suffix(".png")
    colors = [c.color for c in scheme.classes]
    return plot_map_quicklook(
        classes, colors, list(scheme.names), png, "sarfuse map", extra_panels=panels
    )
