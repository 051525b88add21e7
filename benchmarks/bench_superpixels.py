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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--patch", type=int, default=256, help="patch side in pixels")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sarfuse-bench-") as tmp:
        os.environ["SARFUSE_CACHE"] = str(Path(tmp) / "cache")
        data = generate(Path(tmp) / "data", size=args.size, patch=args.patch)
        dataset = PatchDataset(discover(data), args.patch, superpixels=SuperpixelParams())
        print(f"{len(dataset)} patches of {args.patch}^2 px, {platform.processor() or 'cpu'}, "
              f"{args.workers} workers")  # fmt: skip
        serial = run(dataset, 1, clear=True)
        parallel = run(dataset, args.workers, clear=True)
        warm_parallel = run(dataset, args.workers, clear=False)
        warm_serial = run(dataset, 1, clear=False)
    rows = [
        ("cold, 1 worker", serial),
        (f"cold, {args.workers} workers", parallel),
        (f"warm, {args.workers} workers", warm_parallel),
        ("warm, 1 worker", warm_serial),
    ]
    for name, result in rows:
        print(
            f"{name:>20}: {result['seconds']:7.2f} s  "
            f"({result['computed']:.0f} computed, {result['cached']:.0f} cached, "
            f"{len(dataset) / result['seconds']:6.1f} patches/s)"
        )
    print(f"parallel speed-up (cold): {serial['seconds'] / parallel['seconds']:.2f}x")
    print(
        f"cache speed-up (1 worker, cold / warm): {serial['seconds'] / warm_serial['seconds']:.2f}x"
    )


if __name__ == "__main__":
    main()
