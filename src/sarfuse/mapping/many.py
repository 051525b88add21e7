"""``sarfuse map-many``: map many scenes with one probe, over processes and machines.

The scenes come from a folder or a ``samples.csv`` (any layout :func:`discover` reads).
``shard=(i, n)`` keeps every n-th scene starting at the i-th, so n machines (a SLURM job array,
Ray or Dask tasks) split a list between them with no scheduler of ours; ``workers`` processes
on one machine share its scenes and its cores. Each scene streams tile by tile in flat memory
(:func:`map_files`) to ``<out>/<scene name>.tif``; a scene whose map exists is skipped, so a
rerun after a failure maps only what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sarfuse.data.layouts import Sample, discover
from sarfuse.errors import SarfuseError
from sarfuse.mapping.config import MapConfig


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n (SLURM array ids count from 0)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SarfuseError(None, f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise SarfuseError(None, f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def scene_list(scenes: str | Path, shard: tuple[int, int] = (0, 1)) -> list[Sample]:
    """The scenes of a folder or CSV, sorted by name, then this shard's every n-th one."""
    samples = sorted(discover(scenes).samples, key=lambda s: s.name)
    for sample in samples:
        if isinstance(sample.s2, dict):
            raise SarfuseError(sample.name, "S2 given as band files: map needs one S2 GeoTIFF")
    i, n = shard
    return samples[i::n]


def _map_one(
    probe: str, sample: Sample, out: str, threads: int, config: MapConfig, options: dict
) -> dict:
    """Map one scene (in a worker process, with its share of the cores)."""
    import torch

    from sarfuse.mapping.scene import map_files

    torch.set_num_threads(threads)
    return map_files(
        probe, out, s1=sample.s1, s2=sample.s2, config=config, progress=False, **options
    )


def map_many(
    probe: str | Path,
    scenes: list[Sample],
    out_dir: str | Path,
    workers: int = 1,
    config: MapConfig | None = None,
    **options: Any,
) -> Iterator[tuple[Sample, dict | None]]:
    """Map ``scenes`` into ``out_dir`` with the tiling of ``config`` (default:
    :class:`MapConfig`'s); yields (scene, result) as each finishes, result None for a scene
    skipped because its map exists. ``options`` go to :func:`map_files`."""
    config = config or MapConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    for sample in scenes:
        out = out_dir / f"{sample.name}.tif"
        if out.exists():
            yield sample, None
        else:
            todo.append((sample, out))
    if not todo:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(workers, len(todo)))
    threads = max(1, (cores or 1) // workers)
    if workers == 1:
        for sample, out in todo:
            yield sample, _map_one(str(probe), sample, str(out), threads, config, options)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        jobs = {
            pool.submit(_map_one, str(probe), sample, str(out), threads, config, options): sample
            for sample, out in todo
        }
        for job in as_completed(jobs):
            yield jobs[job], job.result()
