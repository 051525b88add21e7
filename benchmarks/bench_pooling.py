"""Superpixel pooling: the vectorised pooling of training against a per-segment Python loop.

Run: ``python benchmarks/bench_pooling.py [--batch 32] [--size 46] [--block 4]``. Both compute
the mean feature of every (image, segment) of the same batch; the loop is what pooling would be
without ``index_add_``: one boolean mask per segment. Prints both times and their ratio, and
stops if the two disagree.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from sarfuse.ssl.pooling import superpixel_mean


def pooled_by_loop(features: Tensor, segments: Tensor, mask: Tensor) -> Tensor:
    """The reference: rows (N, D) sorted by (image, id), one masked mean per segment."""
    rows = []
    for b in range(features.shape[0]):
        for seg in torch.unique(segments[b][mask[b]]):
            where = (segments[b] == seg) & mask[b]  # (H, W)
            rows.append(features[b][:, where].mean(1))
    return torch.stack(rows)


def pooling_batch(batch: int, size: int, dim: int, block: int, seed: int = 0) -> tuple:
    """Random features (B, D, H, W), square segments of ``block`` px, ~10 % pixels masked out."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    segments = ((rows // block) * size + cols // block).expand(batch, size, size).contiguous()
    # channels-last, as the network's features are in training (see PretrainModule)
    features = torch.randn(batch, dim, size, size, generator=gen)
    features = features.contiguous(memory_format=torch.channels_last)
    mask = torch.rand(batch, size, size, generator=gen) > 0.1
    return features, segments, mask


def best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds (this process, all threads) of ``fn()``."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - tic)
        cpu = min(cpu, max(time.process_time() - cpu_tic, 1e-9))
    return wall, cpu


def bench_pooling(batch: int = 32, size: int = 46, dim: int = 64, block: int = 4) -> dict:
    """Seconds of both poolings (best of a few) on one batch, and the loop / vectorised ratio."""
    features, segments, mask = pooling_batch(batch, size, dim, block)
    fast = superpixel_mean(features, segments, mask)[0]
    slow = pooled_by_loop(features, segments, mask)
    if fast.shape != slow.shape or not torch.allclose(fast, slow, atol=1e-5):
        raise RuntimeError("vectorised and per-segment pooling disagree")
    vectorised = best_time(lambda: superpixel_mean(features, segments, mask), 5)
    loop = best_time(lambda: pooled_by_loop(features, segments, mask), 2)
    return {
        "segments": len(fast),
        "vectorised_s": vectorised[0],
        "loop_s": loop[0],
        "speedup": loop[0] / vectorised[0],  # wall time
        "cpu_speedup": loop[1] / vectorised[1],  # CPU time: robust to other jobs' load
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=46, help="crop side (the training context)")
    parser.add_argument("--dim", type=int, default=64, help="channels pooled (two views' D)")
    parser.add_argument("--block", type=int, default=4, help="segment side in pixels")
    args = parser.parse_args()
    r = bench_pooling(args.batch, args.size, args.dim, args.block)
    print(
        f"{r['segments']} segments: vectorised {r['vectorised_s'] * 1e3:.2f} ms, "
        f"per-segment loop {r['loop_s'] * 1e3:.0f} ms, speed-up {r['speedup']:.0f}x "
        f"({r['cpu_speedup']:.0f}x in CPU time)"
    )


if __name__ == "__main__":
    main()
