"""Contrastive negatives from every rank of a distributed (DDP) run.

Under DDP each rank holds a slice of the batch. :func:`gather_rows` concatenates every rank's
rows (slices may differ in length: superpixel counts do) and keeps gradients: its backward sums
the gradient of the gathered rows over ranks (each rank's loss uses every row) and hands each
rank the part for its own rows, as lightly's ``gather_distributed`` and solo-learn do.
:func:`contrast_loss` then computes each rank's anchors against all rows, scaled so that DDP's
average of the ranks' gradients equals the gradient of the loss of the whole batch on one
process; without an initialised process group it is :func:`hard_negative_nt_xent` itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from sarfuse.ssl.losses import hard_negative_nt_xent, hard_negative_rows


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: tuple[int, ...]) -> Tensor:  # (n_r, ...) -> (N, ...)
        rank, size = world()
        padded = x.new_zeros(max(sizes), *x.shape[1:])  # all_gather needs equal shapes
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded)
        ctx.start, ctx.count = sum(sizes[:rank]), len(x)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss reached every row: sum their gradients
        return grad[ctx.start : ctx.start + ctx.count], None


def gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """Every rank's rows of ``x`` (n_r, ...) in rank order, and where this rank's start."""
    rank, size = world()
    if size == 1:
        return x, 0
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(size)]
    dist.all_gather(counts, torch.tensor([len(x)], device=x.device))
    sizes = tuple(int(c) for c in counts)
    return _GatherRows.apply(x, sizes), sum(sizes[:rank])


def contrast_loss(
    z1: Tensor, z2: Tensor, temperature: float, tau_plus: float, beta: float
) -> Tensor:
    """:func:`hard_negative_nt_xent` of pairs z1, z2 (n_r, D) with negatives from all ranks.

    Returns this rank's share: the sum of its 2 n_r anchors' losses times R / (2 N), N the
    pairs of all R ranks; DDP averages gradients over ranks, so training follows the mean loss
    of all 2N anchors, as one process with the whole batch would. Fewer than 2 pairs in all
    give a zero loss still attached to the graph (ranks must all call this, or none).
    """
    _, size = world()
    if size == 1:
        return hard_negative_nt_xent(z1, z2, temperature, tau_plus, beta)
    all1, start = gather_rows(z1)
    all2, _ = gather_rows(z2)
    total, n = len(all1), len(z1)
    if total < 2:
        return (z1.sum() + z2.sum()) * 0.0
    bank = torch.cat([all1, all2])  # (2N, D)
    local = torch.arange(start, start + n, device=z1.device)
    self_idx = torch.cat([local, local + total])  # this rank's anchors: its rows of both views
    partner = (self_idx + total) % (2 * total)
    anchors = torch.cat([z1, z2])
    losses = hard_negative_rows(anchors, bank, self_idx, partner, temperature, tau_plus, beta)
    return losses.sum() * size / (2 * total)
