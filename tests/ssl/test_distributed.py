"""DDP on the CPU with two processes (gloo): gathered negatives, disjoint crops, Lightning runs.

All slow: each test starts interpreters that import torch (and Lightning).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sarfuse.ssl.crops import CropBatchSampler
from sarfuse.ssl.distributed import contrast_loss, gather_rows
from sarfuse.ssl.losses import hard_negative_nt_xent

pytestmark = pytest.mark.slow
SPLIT = (5, 12)  # rank 0 holds pairs [0, 5), rank 1 [5, 12): unequal, as superpixel counts are


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(12, 8, generator=gen), torch.randn(12, 8, generator=gen)


def _rank_job(rank: int, init: str, out: str) -> None:
    """One rank: its slice's loss and gradients, the gathered rows, and its first crops."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    z1, z2 = (z.requires_grad_(True) for z in _pairs())
    rows = slice(0, SPLIT[0]) if rank == 0 else slice(SPLIT[0], SPLIT[1])
    loss = contrast_loss(z1[rows], z2[rows], 0.5, 0.1, 1.0)
    loss.backward()
    gathered, start = gather_rows(z1.detach()[rows])
    sampler = CropBatchSampler(epoch_size=64, batch=4)
    crops = [i for batch, _ in zip(sampler, range(3), strict=False) for i in batch]
    result = {"loss": loss.detach(), "g1": z1.grad[rows], "g2": z2.grad[rows],
              "gathered": gathered, "start": start, "crops": crops}  # fmt: skip
    torch.save(result, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_split_batch_loss_and_gradients_equal_one_process(tmp_path):
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_job, args=(init, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    z1, z2 = (z.requires_grad_(True) for z in _pairs())
    whole = hard_negative_nt_xent(z1, z2, 0.5, 0.1, 1.0)
    whole.backward()
    # DDP averages the ranks' gradients; their losses average to the whole batch's
    torch.testing.assert_close((r0["loss"] + r1["loss"]) / 2, whole.detach())
    torch.testing.assert_close(torch.cat([r0["g1"], r1["g1"]]) / 2, z1.grad)
    torch.testing.assert_close(torch.cat([r0["g2"], r1["g2"]]) / 2, z2.grad)
    torch.testing.assert_close(r0["gathered"], z1.detach())  # every rank sees all rows
    assert (r0["start"], r1["start"]) == (0, SPLIT[0])
    assert not set(r0["crops"]) & set(r1["crops"]) and len(set(r0["crops"])) == 12


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarfuse", *args], capture_output=True,
                          text=True, env=env, timeout=900)  # fmt: skip


def test_pretrain_ddp_two_cpu_processes_trains_and_resumes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "run"
    common = ["--out", str(out), "--device", "cpu", "--devices", "2", "--strategy", "ddp"]
    tiny = ["--width", "4", "--feat-dim", "8", "--batch", "4", "--crop", "16"]
    first = _cli("pretrain", *common, *tiny, "--steps", "4", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = torch.load(out / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 4
    again = _cli("pretrain", *common, "--resume", "--steps", "6", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    ckpt = torch.load(out / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 6
    with (out / "loss.csv").open(newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(1, 7))  # one row a step, from rank 0 only
    assert not list(Path(out).glob("*.tmp*"))
