"""Superpixel benchmark: one worker vs all cores, cold vs warm cache, on a synthetic dataset.

Run: ``python benchmarks/bench_superpixels.py [--size 2048] [--workers N]``. Prints measured
times and ratios (nothing is asserted): the parallel speed-up of a cold run and how much faster a
warm (cached) run is than a cold one.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

from sarfuse.data.dataset import PatchDataset
from sarfuse.data.layouts import discover
from sarfuse.data.synth import generate
from sarfuse.superpixels import SuperpixelParams, cache_dir, compute_all


def run(dataset: PatchDataset, workers: int, clear: bool) -> dict[str, float]:
    if clear:
        shutil.rmtree(cache_dir(), ignore_errors=True)
    return compute_all(dataset, workers=workers, progress=False)


def bench_superpixels(size: int = 2048, patch: int = 256, workers: int | None = None) -> dict:
    """Seconds to fill the cache of a synthetic dataset: cold with one worker and with all,
    then warm (everything cached) with one worker."""
    workers = workers or len(os.sched_getaffinity(0))
    old = os.environ.get("SARFUSE_CACHE")
    with tempfile.TemporaryDirectory(prefix="sarfuse-bench-") as tmp:
        os.environ["SARFUSE_CACHE"] = str(Path(tmp) / "cache")
        try:
            data = generate(Path(tmp) / "data", size=size, patch=patch)
            dataset = PatchDataset(discover(data), patch, superpixels=SuperpixelParams())
            serial = run(dataset, 1, clear=True)
            parallel = run(dataset, workers, clear=True)
            warm = run(dataset, 1, clear=False)
        finally:
            if old is None:
                os.environ.pop("SARFUSE_CACHE", None)
            else:
                os.environ["SARFUSE_CACHE"] = old
    return {
        "patches": len(dataset),
        "workers": workers,
        "serial_s": serial["seconds"],
        "parallel_s": parallel["seconds"],
        "warm_s": warm["seconds"],
        "warm_cached": warm["cached"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--patch", type=int, default=256, help="patch side in pixels")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    r = bench_superpixels(args.size, args.patch, args.workers)
    print(f"{r['patches']} patches of {args.patch}^2 px, {platform.processor() or 'cpu'}, "
          f"{r['workers']} workers")  # fmt: skip
    for name, key in (("cold, 1 worker", "serial_s"), (f"cold, {r['workers']} workers",
                      "parallel_s"), ("warm, 1 worker", "warm_s")):  # fmt: skip
        print(f"{name:>20}: {r[key]:7.2f} s ({r['patches'] / r[key]:6.1f} patches/s)")
    print(f"parallel speed-up (cold): {r['serial_s'] / r['parallel_s']:.2f}x")
    print(f"cache speed-up (1 worker, cold / warm): {r['serial_s'] / r['warm_s']:.2f}x")


if __name__ == "__main__":
    main()
