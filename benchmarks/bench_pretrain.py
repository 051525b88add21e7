"""Pretraining throughput: the training step against the device's matmul peak, and data loading.

Run: ``python benchmarks/bench_pretrain.py [--device auto|cpu|cuda] [--steps 5]``. Times the
training step (forward + backward + Adam) of the default configuration (intermediate fusion,
pixel method, crop 32, batch 32, width 16) on demo crops drawn by the training DataLoader;
counts its FLOPs with ``torch.utils.flop_counter``; measures the float32 matmul peak of the same
device in the same run, and the share of the loop's time spent waiting for the next batch.
Prints a table; nothing is asserted. ``run_all.py`` reuses these functions.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from statistics import median

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from sarfuse.contract import DataContract
from sarfuse.data.bands import network_s2_bands
from sarfuse.runtime import resolve_source, torch_device
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.crops import CropBatchSampler, CropDataset
from sarfuse.ssl.module import PretrainModule, context_size, view_margin
from sarfuse.ssl.views import sample_view_params
from sarfuse.superpixels import compute_all


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an ``n x n`` matmul (2 n^3 FLOPs) on ``device``."""
    return matmul_rates(device, n, repeats)[0]


def matmul_rates(
    device: torch.device, n: int, repeats: int = 10, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """Best GFLOP/s (float32 unless ``dtype``) of an ``n x n`` matmul per second of wall time
    and per second of this process's CPU time (all threads). The second does not drop when
    other jobs share the cores (threads waiting for them sleep: ``OMP_WAIT_POLICY=PASSIVE``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pools, cuBLAS handles
    wall = cpu = float("inf")
    for _ in range(repeats):
        sync(device)
        tic, cpu_tic = time.perf_counter(), time.process_time()
        a @ b
        sync(device)
        wall = min(wall, time.perf_counter() - tic)
        cpu = min(cpu, max(time.process_time() - cpu_tic, 1e-9))
    return 2 * n**3 / wall / 1e9, 2 * n**3 / cpu / 1e9


def autocast(device: torch.device, precision: str):
    """The autocast context Lightning's ``precision`` sets up: bf16 for ``bf16-mixed``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def train_step(
    module: PretrainModule, optimizer: torch.optim.Optimizer, batch: dict, precision: str
) -> float:
    """One optimiser step of the module's method on ``batch``; returns the loss."""
    device = batch["valid"].device
    margin = view_margin(module.cfg.crop, module.cfg.max_shift)
    params = sample_view_params(batch["valid"].shape[0], margin, device=device)
    with autocast(device, precision):
        loss = module.method.loss(module.model, batch, params)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def demo_loader(cfg: PretrainConfig) -> DataLoader:
    """The training DataLoader of ``sarfuse pretrain`` over the demo data, superpixels cached."""
    source = resolve_source(None)
    contract = DataContract.for_pretraining(source, replace(cfg, stats=None))
    patches = contract.open_patches(source, superpixels=True)
    compute_all(patches, progress=False)
    crops = CropDataset(patches, context_size(cfg), cfg.crops_per_patch, seed=cfg.seed)
    sampler = CropBatchSampler(len(crops), cfg.batch)
    return DataLoader(crops, batch_sampler=sampler, num_workers=cfg.workers,
                      persistent_workers=cfg.workers > 0)  # fmt: skip


def bench_step(cfg: PretrainConfig, device: torch.device, steps: int, warmup: int) -> dict:
    """Train ``steps`` timed steps (after ``warmup``) on demo crops through the real loader.

    Returns the median step time (compute only), the FLOPs of one step (counted on the first),
    and the share of the loop's wall time spent waiting for the next batch.
    """
    module = PretrainModule(asdict(cfg), len(cfg.s1_bands), len(cfg.s2_bands), contract={})
    module.to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = iter(_endless(demo_loader(cfg)))
    with FlopCounterMode(display=False) as counter:
        train_step(module, optimizer, _to(next(batches), device), cfg.precision)
    for _ in range(warmup):
        train_step(module, optimizer, _to(next(batches), device), cfg.precision)
    times, cpu, waits, losses = [], [], [], []
    for _ in range(steps):
        tic = time.perf_counter()
        batch = _to(next(batches), device)
        sync(device)
        mid, cpu_tic = time.perf_counter(), time.process_time()
        losses.append(train_step(module, optimizer, batch, cfg.precision))
        sync(device)
        times.append(time.perf_counter() - mid)
        cpu.append(time.process_time() - cpu_tic)
        waits.append(mid - tic)
    seconds = median(times)
    flops = counter.get_total_flops()
    return {
        "seconds": seconds,
        "pixels_per_s": 2 * cfg.batch * cfg.crop**2 / seconds,  # two views per sample
        "gflop": flops / 1e9,
        "gflops": flops / seconds / 1e9,
        "cpu_gflops": flops / max(median(cpu), 1e-9) / 1e9,  # per second of CPU time
        "params": sum(p.numel() for p in module.model.parameters()),
        "data_wait_fraction": sum(waits) / (sum(waits) + sum(times)),
        "losses": losses,
    }


def _endless(loader: DataLoader):
    while True:
        yield from loader


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def bench_config(batch: int, crop: int, width: int, precision: str = "32-true") -> PretrainConfig:
    """The default configuration (intermediate fusion on the demo's S1 + S2 bands) resized."""
    cfg = replace(PretrainConfig(), fusion="intermediate", batch=batch, crop=crop, width=width,
                  precision=precision)  # fmt: skip
    # the default band list names the demo data's bands ("all"): spell them out for the tensors
    return replace(cfg, s2_bands=network_s2_bands(cfg.s2_bands, resolve_source(None).s2_bands()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=PretrainConfig.batch)
    parser.add_argument("--crop", type=int, default=PretrainConfig.crop)
    parser.add_argument("--width", type=int, default=PretrainConfig.width)
    parser.add_argument("--precision", default=PretrainConfig.precision)
    parser.add_argument("--matmul", type=int, default=2048, help="side of the peak matmul")
    args = parser.parse_args()
    device = torch.device(torch_device(args.device))
    cfg = bench_config(args.batch, args.crop, args.width, args.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{cfg.fusion}/{cfg.method}, crop {cfg.crop} (context {context_size(cfg)}), "
        f"batch {cfg.batch}, width {cfg.width}, D {cfg.feat_dim}, {cfg.precision}, "
        f"{len(cfg.s1_bands)} S1 + {len(cfg.s2_bands)} S2 bands"
    )
    peak = matmul_peak(device, args.matmul)
    step = bench_step(cfg, device, args.steps, args.warmup)
    peak_after = matmul_peak(device, args.matmul)  # a second look: the load may have changed
    best_peak = max(peak, peak_after)
    rows = [
        ("network parameters", f"{step['params'] / 1e6:.3f} M"),
        ("training step (median)", f"{step['seconds'] * 1e3:.1f} ms"),
        ("pixels/s (2 views x B x crop^2)", f"{step['pixels_per_s']:,.0f}"),
        ("FLOPs per step (fwd + bwd)", f"{step['gflop']:.2f} GFLOP"),
        ("achieved", f"{step['gflops']:.1f} GFLOP/s"),
        (
            f"fp32 matmul peak ({args.matmul}^2, before/after)",
            f"{peak:.1f} / {peak_after:.1f} GFLOP/s",
        ),
        ("achieved / peak", f"{step['gflops'] / best_peak:.1%}"),
        ("share of time waiting for data", f"{step['data_wait_fraction']:.1%}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
