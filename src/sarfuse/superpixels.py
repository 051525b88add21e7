"""Felzenszwalb superpixels: the regions over which SSL pools features, cached on disk.

Segments come from the optical bands when S2 exists (sharp, speckle-free edges), otherwise from
speckle-filtered S1. The authors segment S2 B2, B3, B4, clipped to [0, 10000] and scaled to
[0, 1] by one min-max over the three-band stack; we segment the four 10 m bands B2, B3, B4, B8
with each band's 2-98 % range scaled to [0, 1], so one bright band or outlier pixel does not
flatten the others (the Felzenszwalb parameters are the authors').

Segments are computed once per patch or scene and cached under ``$SARFUSE_CACHE`` (default
``~/.cache/sarfuse``) ``/superpixels/<sha>.npy``, keyed by the input files' fingerprint (path,
size, mtime), the window and the parameters, so a changed input file is never served a stale
segmentation.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.segmentation import felzenszwalb
from tqdm.auto import tqdm

from sarfuse.data.bands import S2_10M_BANDS
from sarfuse.data.raster import is_gdal_url
from sarfuse.errors import SarfuseError, check
from sarfuse.io_utils import atomic_save

SEGMENTED_S2_BANDS = S2_10M_BANDS  # the S2 bands segmented when present (the authors': B2, B3, B4)
_CACHE_VERSION = 1  # bump when the segmentation recipe changes, to orphan old cache entries
_counts = {"computed": 0, "cached": 0}  # per process; lets compute_many report cache hits


@dataclass(frozen=True)
class SuperpixelParams:
    """Felzenszwalb parameters (defaults: the authors' code's)."""

    scale: float = 200.0  # observation level on [0, 1]-scaled bands; higher = larger segments
    sigma: float = 0.5  # Gaussian pre-smoothing in pixels
    min_size: int = 30  # minimum segment size in pixels


def robust_scale(
    image: np.ndarray, valid: np.ndarray, low: float = 2.0, high: float = 98.0
) -> np.ndarray:
    """Map each band's [low, high] percentile of valid pixels to [0, 1] and clip.

    ``image`` (C, H, W) -> float64 (C, H, W); invalid and non-finite pixels become 0. Makes
    ``scale`` mean the same on dB, reflectance or any other units.
    """
    ok = valid & np.isfinite(image).all(axis=0)
    out = np.zeros(image.shape, dtype=np.float64)
    if not ok.any():
        return out
    for c, band in enumerate(image):
        lo, hi = np.percentile(band[ok], [low, high])
        if hi > lo:
            out[c] = np.clip((band - lo) / (hi - lo), 0.0, 1.0)
    out[:, ~ok] = 0.0
    return out


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber any integer labels (H, W) to contiguous int64 ids 0..n-1 (order preserved)."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


def segment(
    image: np.ndarray, params: SuperpixelParams, valid: np.ndarray | None = None
) -> np.ndarray:
    """Felzenszwalb segments of ``image`` (C, H, W) -> int64 (H, W), ids contiguous 0..n-1.

    Invalid pixels never share a segment with valid ones (they get their own ids and are
    ignored later through ``valid``).
    """
    check(
        image.ndim == 3 and image.shape[0] > 0,
        None,
        f"superpixel input must be (C, H, W), got {image.shape}",
    )
    if valid is None:
        valid = np.ones(image.shape[1:], dtype=bool)
    valid = valid & np.isfinite(image).all(axis=0)
    scaled = robust_scale(image, valid)
    with warnings.catch_warnings():  # skimage warns that 4 channels might be RGBA; they are not
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = felzenszwalb(
            scaled, scale=params.scale, sigma=params.sigma, min_size=params.min_size, channel_axis=0
        )
    return relabel(raw.astype(np.int64) * 2 + valid)


def lee_filter(image: np.ndarray, valid: np.ndarray, size: int = 5) -> np.ndarray:
    """Lee speckle filter on each band of ``image`` (C, H, W) -> float64 (C, H, W).

    Keeps of each pixel's deviation from its local mean only the share of local variance that
    exceeds the noise variance, estimated as the median local variance (homogeneous areas
    dominate), so flat areas are smoothed and edges kept. Invalid pixels are filled with the
    band median first so they do not bleed into their neighbours.
    """
    out = np.empty(image.shape, dtype=np.float64)
    ok = valid & np.isfinite(image).all(axis=0)
    for c, band in enumerate(image.astype(np.float64)):
        band = np.where(ok, band, np.median(band[ok]) if ok.any() else 0.0)
        mean = uniform_filter(band, size)
        var = np.maximum(uniform_filter(band * band, size) - mean * mean, 0.0)
        noise = np.median(var)
        weight = np.maximum(var - noise, 0.0) / np.maximum(var, 1e-12)
        out[c] = mean + weight * (band - mean)
    return out


def superpixel_input(
    s1_db: np.ndarray | None,
    s2_refl: np.ndarray | None,
    s2_bands: Sequence[str] = (),
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """The image to segment: S2 (its 10 m bands when present, else all bands) or filtered S1.

    ``s1_db`` (2, H, W) in dB, ``s2_refl`` (C, H, W) with band names ``s2_bands`` -> (C', H, W).
    """
    if s2_refl is not None:
        names = list(s2_bands)
        if all(b in names for b in SEGMENTED_S2_BANDS):
            return s2_refl[[names.index(b) for b in SEGMENTED_S2_BANDS]]
        return s2_refl
    if s1_db is None:
        raise SarfuseError(None, "superpixels need S1 or S2 data, got neither")
    return lee_filter(s1_db, np.ones(s1_db.shape[1:], bool) if valid is None else valid)


def cache_dir() -> Path:
    """Where segmentations are cached: ``$SARFUSE_CACHE/superpixels`` or the user cache."""
    root = os.environ.get("SARFUSE_CACHE") or Path.home() / ".cache" / "sarfuse"
    return Path(root) / "superpixels"


PathSpec = str | Path | Mapping[str, str | Path] | None


def file_fingerprint(paths: Iterable[PathSpec]) -> str:
    """Hash of (resolved path, size, mtime_ns) of each input file; changes when a file changes.

    Entries may be a path, a band-name -> path mapping (one file per band) or ``None`` (absent).
    """
    digest = hashlib.sha256()
    for spec in paths:
        files = spec.values() if isinstance(spec, Mapping) else [] if spec is None else [spec]
        for file in files:
            digest.update(f"{_stamp(file)};".encode())
    return digest.hexdigest()


def _stamp(file: str | Path) -> str:
    """(resolved path, size, mtime_ns) of a file; a URL by its text, a zip member with its zip's."""
    if is_gdal_url(file):
        archive = re.match(r"/vsizip/(.+?\.zip)(/|$)", str(file), re.IGNORECASE)
        return f"{file}|{_stamp(archive.group(1)) if archive else ''}"
    try:
        stat = Path(file).stat()
    except OSError as err:
        raise SarfuseError(file, f"cannot read input file ({err.strerror})") from err
    return f"{Path(file).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def cache_key(paths: Iterable[PathSpec], window: Sequence[int] | None = None) -> str:
    """Cache key of one patch: its input files' fingerprint and its window (row, col, h, w)."""
    return f"{file_fingerprint(paths)}|window={None if window is None else tuple(window)}"


def _cache_path(key: str, params: SuperpixelParams, sensors: str) -> Path:
    text = f"v{_CACHE_VERSION}|{key}|{sorted(asdict(params).items())}|{sensors}"
    return cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()}.npy"


def _load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached segments, or None when missing, corrupt or of the wrong shape."""
    try:
        seg = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return seg if seg.shape == shape and seg.dtype == np.int64 else None


def _sensors(has_s1: bool, has_s2: bool, s2_bands: Sequence[str]) -> str:
    return f"s1={has_s1}|s2={tuple(s2_bands) if has_s2 else None}"


def is_cached(
    key: str, params: SuperpixelParams, has_s1: bool, has_s2: bool, s2_bands: Sequence[str],
    shape: tuple[int, int],
) -> bool:  # fmt: skip
    """Whether :func:`patch_segments` would load these segments from the cache (a header read:
    no pixel of the patch is needed, so a warm cache is checked without reading the inputs)."""
    path = _cache_path(key, params, _sensors(has_s1, has_s2, s2_bands))
    try:
        seg = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return seg.shape == shape and seg.dtype == np.int64


def patch_segments(
    s1_db: np.ndarray | None,
    s2_refl: np.ndarray | None,
    s2_bands: Sequence[str],
    valid: np.ndarray,
    params: SuperpixelParams,
    key: str,
) -> np.ndarray:
    """Segments (H, W) int64 of one patch, from the disk cache when fresh, else computed and saved.

    ``key`` comes from :func:`cache_key` (input files + window); the bands used are added here.
    """
    path = _cache_path(key, params, _sensors(s1_db is not None, s2_refl is not None, s2_bands))
    seg = _load(path, valid.shape)
    if seg is not None:
        _counts["cached"] += 1
        return seg
    seg = segment(superpixel_input(s1_db, s2_refl, s2_bands, valid), params, valid)
    atomic_save(path, partial(np.save, arr=seg, allow_pickle=False))  # no half-written files
    _counts["computed"] += 1
    return seg


JobResult = tuple[int, int, tuple[str | None, str] | None]


def _run_job(job: Callable[[], Any]) -> JobResult:
    """Run one job -> (segmentations computed, read from the cache, error or None).

    A :class:`SarfuseError` comes back as plain (path, problem) data for the parent to raise.
    """
    before = dict(_counts)
    try:
        job()
    except SarfuseError as err:
        return 0, 0, (err.path, err.problem)
    return _counts["computed"] - before["computed"], _counts["cached"] - before["cached"], None


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def compute_many(
    jobs: Sequence[Callable[[], Any]],
    workers: int | None = None,
    progress: bool = True,
    start_method: Literal["fork", "forkserver", "spawn"] | None = None,
) -> dict[str, float]:
    """Run picklable zero-argument ``jobs`` (each fills the cache via :func:`patch_segments`).

    Runs over a process pool of ``workers`` processes (default: all cores); ``workers=1`` runs
    in this process. Workers are forked on Linux, as torch's DataLoader does, so they start at
    once with every module loaded (spawning re-imports torch in each: seconds), and spawned
    elsewhere; jobs only need to be picklable, so any ``start_method`` works. Returns
    ``computed``, ``cached`` and ``seconds``.
    """
    workers = min(workers or _cores(), max(len(jobs), 1))
    check(workers >= 1, None, f"workers must be >= 1, got {workers}")
    method = start_method or ("fork" if sys.platform == "linux" else "spawn")
    start = time.perf_counter()
    computed = cached = 0
    with ExitStack() as stack:
        if workers == 1:
            results: Iterable[JobResult] = map(_run_job, jobs)
        else:
            context = get_context(method)
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
            results = pool.map(_run_job, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
        bar = tqdm(results, total=len(jobs), desc="superpixels", unit="patch", disable=not progress)
        for done, hit, error in bar:
            if error is not None:
                raise SarfuseError(*error)
            computed, cached = computed + done, cached + hit
    return {"computed": computed, "cached": cached, "seconds": time.perf_counter() - start}


class Patches(Protocol):
    """What :func:`compute_all` needs of a dataset (``PatchDataset`` has it)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


def _item_segments(dataset: Patches, index: int) -> None:
    cached = getattr(dataset, "segments_cached", None)
    if cached is not None and cached(index):  # a warm cache: no need to read the patch
        _counts["cached"] += 1
        return
    check("segments" in dataset[index], None, "the dataset was built without superpixel parameters")


def compute_all(
    dataset: Patches, workers: int | None = None, progress: bool = True
) -> dict[str, float]:
    """Fill the superpixel cache for every patch of ``dataset`` in parallel.

    ``dataset`` must be picklable and its items must hold ``"segments"`` (a ``PatchDataset``
    built with ``superpixels=``), which reading an item computes or loads from the cache.
    """
    jobs = [partial(_item_segments, dataset, i) for i in range(len(dataset))]
    return compute_many(jobs, workers=workers, progress=progress)
