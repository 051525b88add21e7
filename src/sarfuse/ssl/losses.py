"""Self-supervised losses as pure functions on paired embeddings.

- :func:`hard_negative_nt_xent`: the hard-negative contrastive loss of Robinson et al. (ICLR 2021,
  "Contrastive learning with hard negative samples"); beta = tau_plus = 0 is plain NT-Xent.
- :func:`dcca_loss`: deep canonical correlation analysis (Andrew et al., ICML 2013).

The functions take every setting as an argument; :class:`ContrastOptions` and :data:`DCCA_EPS`
hold the values the methods use (the paper's), once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sarfuse.errors import check

DCCA_EPS = 1e-3  # ridge added to the DCCA covariances


@dataclass(frozen=True)
class ContrastOptions:
    """Settings of :func:`hard_negative_nt_xent` (defaults: the paper's)."""

    temperature: float = 0.5  # contrastive temperature
    tau_plus: float = 0.1  # class prior: the share of negatives that are in fact positives
    beta: float = 1.0  # concentration of the weights on hard negatives


def hard_negative_nt_xent(
    z1: Tensor, z2: Tensor, temperature: float, tau_plus: float, beta: float
) -> Tensor:
    """Hard-negative NT-Xent between paired rows of z1 (N, D) and z2 (N, D); a scalar.

    All 2N rows are anchors; an anchor's positive is the other view of its row and its
    M = 2N - 2 negatives are all the other rows. Negatives are reweighted by
    w = exp(beta s) / mean(exp(beta s)) (s = cosine / temperature), the positive share
    ``tau_plus`` is removed from them, and the result is clamped below at M exp(-1/t):

        Ng = max((sum(w exp(s_neg)) - tau_plus M exp(s_pos)) / (1 - tau_plus), M exp(-1/t))
        loss = mean(-log(exp(s_pos) / (exp(s_pos) + Ng)))

    Everything is evaluated as log-sum-exps, so large 1/temperature cannot overflow.
    """
    check(
        z1.ndim == 2 and z1.shape == z2.shape,
        None,
        f"contrastive pairs must be two (N, D) tensors of equal shape, got {tuple(z1.shape)} "
        f"and {tuple(z2.shape)}",
    )
    n = z1.shape[0]
    check(n >= 2, None, f"a contrastive loss needs at least 2 pairs, got {n}")
    check(0.0 <= tau_plus < 1.0, None, f"tau_plus must be in [0, 1), got {tau_plus}")
    z = torch.cat([z1, z2])  # (2N, D)
    idx = torch.arange(2 * n, device=z.device)
    return hard_negative_rows(z, z, idx, (idx + n) % (2 * n), temperature, tau_plus, beta).mean()


def hard_negative_rows(
    anchors: Tensor,
    bank: Tensor,
    self_idx: Tensor,
    partner_idx: Tensor,
    temperature: float,
    tau_plus: float,
    beta: float,
) -> Tensor:
    """The loss of :func:`hard_negative_nt_xent` for each of A ``anchors`` (A, D) against all
    rows of ``bank`` (M + 2, D); (A,). Anchor ``a`` is row ``self_idx[a]`` of the bank, its
    positive row ``partner_idx[a]``, every other row a negative. With the bank gathered from
    all ranks (:mod:`sarfuse.ssl.distributed`), each rank computes its own anchors' losses.
    """
    same = bank is anchors
    anchors = F.normalize(anchors, dim=1)
    bank = anchors if same else F.normalize(bank, dim=1)
    sim = anchors @ bank.T / temperature  # (A, M + 2)
    rows = torch.arange(len(anchors), device=sim.device)
    s_pos = sim[rows, partner_idx]  # (A,)
    # the negatives of each anchor: its row of sim without itself and its partner, which are
    # left out of a masked log-sum-exp (no boolean indexing, which costs a sync and a copy)
    others = torch.ones_like(sim, dtype=torch.bool)
    others[rows, self_idx] = False
    others[rows, partner_idx] = False
    m = bank.shape[0] - 2

    def lse_neg(scale: float) -> Tensor:  # log sum over the M negatives of exp(scale * s)
        return torch.logsumexp((scale * sim).masked_fill(~others, -math.inf), 1)

    # log sum(w exp(s)) with w normalised to mean 1
    log_ng = lse_neg(beta + 1) - lse_neg(beta) + math.log(m)
    if tau_plus > 0:
        gap = math.log(tau_plus * m) + s_pos - log_ng  # < 0 while the debiased sum is positive
        # clamping the gap at -1e-6 bounds the gradient; it changes nothing for t > 0.15, where
        # such a small debiased sum is always below the floor
        safe = gap.clamp(max=-1e-6)
        debiased = log_ng + torch.log(-torch.expm1(safe)) - math.log1p(-tau_plus)
        log_ng = torch.where(gap < 0, debiased, torch.full_like(debiased, -math.inf))
        log_ng = log_ng.clamp(min=math.log(m) - 1.0 / temperature)
    return torch.logaddexp(s_pos, log_ng) - s_pos


def dcca_loss(h1: Tensor, h2: Tensor, eps: float, k: int | None = None) -> Tensor:
    """Minus the total (or top-``k``) canonical correlation between h1 (N, D1) and h2 (N, D2).

    Covariances are regularised with ``eps * I``. The correlations are the singular values of
    T = S11^-1/2 S12 S22^-1/2; we whiten with Cholesky factors instead (L1^-1 S12 L2^-T has the
    same singular values, since S^-1/2 L is orthogonal), because the backward pass of ``eigh``
    divides by eigenvalue gaps and turns to NaN when features are degenerate, e.g. dead
    channels. Computed in float64; returns a scalar in h1's dtype, between -min(D1, D2) and 0.
    """
    check(
        h1.ndim == 2 and h2.ndim == 2 and h1.shape[0] == h2.shape[0],
        None,
        f"DCCA needs (N, D1) and (N, D2) inputs, got {tuple(h1.shape)} and {tuple(h2.shape)}",
    )
    n = h1.shape[0]
    check(n >= 2, None, f"DCCA needs at least 2 samples, got {n}")
    x = h1.double() - h1.double().mean(0)
    y = h2.double() - h2.double().mean(0)
    s11 = x.T @ x / (n - 1) + eps * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    s22 = y.T @ y / (n - 1) + eps * torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
    s12 = x.T @ y / (n - 1)  # (D1, D2)
    l1 = torch.linalg.cholesky(s11)
    l2 = torch.linalg.cholesky(s22)
    a = torch.linalg.solve_triangular(l1, s12, upper=False)  # L1^-1 S12
    t = torch.linalg.solve_triangular(l2, a.T, upper=False).T  # L1^-1 S12 L2^-T (D1, D2)
    corr = torch.linalg.svdvals(t)  # descending
    if k is not None:
        corr = corr[:k]
    return -corr.sum().to(h1.dtype)
