"""Losses against hand-written NumPy references, plus symmetry, optimisation and stability."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from sarfuse.errors import SarfuseError
from sarfuse.ssl.losses import DCCA_EPS, ContrastOptions, dcca_loss, hard_negative_nt_xent

PAPER = asdict(ContrastOptions())  # temperature, tau_plus and beta of the paper


def normalise(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def nt_xent_reference(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """SimCLR's NT-Xent written out anchor by anchor."""
    z = normalise(np.concatenate([z1, z2]))
    n2 = len(z)
    losses = []
    for i in range(n2):
        j = (i + n2 // 2) % n2
        logits = [z[i] @ z[k] / t for k in range(n2) if k != i]
        losses.append(-(z[i] @ z[j] / t) + np.log(np.sum(np.exp(logits))))
    return float(np.mean(losses))


def hard_negative_reference(z1, z2, t, tau_plus, beta) -> tuple[float, bool]:
    """Robinson et al.'s estimator written out anchor by anchor; also says if the clamp acted."""
    z = normalise(np.concatenate([z1, z2]))
    n2 = len(z)
    m = n2 - 2
    losses, clamped = [], False
    for i in range(n2):
        j = (i + n2 // 2) % n2
        pos = np.exp(z[i] @ z[j] / t)
        neg = np.array([np.exp(z[i] @ z[k] / t) for k in range(n2) if k not in (i, j)])
        w = neg**beta / np.mean(neg**beta)
        ng = (-tau_plus * m * pos + np.sum(w * neg)) / (1 - tau_plus)
        floor = m * np.exp(-1 / t)
        clamped |= ng < floor
        losses.append(-np.log(pos / (pos + max(ng, floor))))
    return float(np.mean(losses)), clamped


def pairs(n: int = 6, d: int = 4, seed: int = 0, noise: float = 1.0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1, z1 + noise * torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("t", [0.5, 0.1])
def test_reduces_to_nt_xent(t):
    z1, z2 = pairs()
    got = hard_negative_nt_xent(z1, z2, temperature=t, tau_plus=0.0, beta=0.0)
    assert got.item() == pytest.approx(nt_xent_reference(z1.numpy(), z2.numpy(), t), rel=1e-10)


@pytest.mark.parametrize(
    ("t", "tau_plus", "beta", "noise", "clamps"),
    [(0.5, 0.1, 1.0, 1.0, False), (0.2, 0.05, 0.5, 2.0, False), (0.5, 0.5, 1.0, 0.05, True)],
)
def test_equals_hard_negative_formula(t, tau_plus, beta, noise, clamps):
    z1, z2 = pairs(n=8, noise=noise, seed=3)
    expected, clamped = hard_negative_reference(z1.numpy(), z2.numpy(), t, tau_plus, beta)
    assert clamped == clamps  # the last case exercises the lower clamp
    got = hard_negative_nt_xent(z1, z2, temperature=t, tau_plus=tau_plus, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_symmetric_in_the_two_views():
    z1, z2 = pairs()
    torch.testing.assert_close(
        hard_negative_nt_xent(z1, z2, **PAPER), hard_negative_nt_xent(z2, z1, **PAPER)
    )


def test_aligned_pairs_score_lower_than_random_pairs():
    z1, _ = pairs(n=16, d=8)
    _, unrelated = pairs(n=16, d=8, seed=1)
    assert (
        hard_negative_nt_xent(z1, z1, **PAPER) < hard_negative_nt_xent(z1, unrelated, **PAPER) - 1.0
    )


def test_gradient_steps_lower_the_loss():
    z1, z2 = (t.float().requires_grad_() for t in pairs(n=12, d=8))
    opt = torch.optim.Adam([z1, z2], lr=0.05)
    first = None
    for _ in range(30):
        loss = hard_negative_nt_xent(z1, z2, **PAPER)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert hard_negative_nt_xent(z1, z2, **PAPER).item() < first - 0.3


def test_stable_at_low_temperature_in_float32():
    z1, z2 = (t.float().requires_grad_() for t in pairs(n=32, d=8))
    loss = hard_negative_nt_xent(z1, z2, temperature=0.01, tau_plus=0.1, beta=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_contrastive_input_checks():
    z1, z2 = pairs()
    with pytest.raises(SarfuseError, match="at least 2 pairs"):
        hard_negative_nt_xent(z1[:1], z2[:1], **PAPER)
    with pytest.raises(SarfuseError, match="equal shape"):
        hard_negative_nt_xent(z1, z2[:, :3], **PAPER)
    with pytest.raises(SarfuseError, match="tau_plus"):
        hard_negative_nt_xent(z1, z2, **(PAPER | {"tau_plus": 1.0}))


def test_dcca_of_linearly_related_views_is_minus_the_dimension():
    g = torch.Generator().manual_seed(0)
    h1 = torch.randn(500, 4, generator=g)
    mix = torch.randn(4, 4, generator=g) + 3 * torch.eye(4)
    loss = dcca_loss(h1, h1 @ mix, DCCA_EPS)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-4.0, abs=0.02)
    wider = torch.cat([h1 @ mix, torch.randn(500, 2, generator=g)], 1)  # min(D1, D2) = 4
    assert dcca_loss(h1, wider, DCCA_EPS).item() == pytest.approx(-4.0, abs=0.05)
    assert dcca_loss(h1, h1 @ mix, DCCA_EPS, k=2).item() == pytest.approx(-2.0, abs=0.01)


def test_dcca_of_independent_noise_is_near_zero():
    g = torch.Generator().manual_seed(1)
    loss = dcca_loss(torch.randn(4000, 4, generator=g), torch.randn(4000, 3, generator=g), DCCA_EPS)
    assert -0.2 < loss.item() <= 0.0


def test_dcca_gradient_is_finite_for_degenerate_features():
    g = torch.Generator().manual_seed(2)
    h1 = torch.randn(200, 5, generator=g)
    h1[:, 3:] = 0.0  # dead channels: repeated covariance eigenvalues
    h1.requires_grad_()
    h2 = torch.randn(200, 4, generator=g).requires_grad_()
    dcca_loss(h1, h2, DCCA_EPS).backward()
    assert torch.isfinite(h1.grad).all() and torch.isfinite(h2.grad).all()
    assert h2.grad.abs().sum() > 0


def test_dcca_input_checks():
    with pytest.raises(SarfuseError, match="at least 2 samples"):
        dcca_loss(torch.randn(1, 3), torch.randn(1, 3), DCCA_EPS)
    with pytest.raises(SarfuseError, match="\\(N, D1\\) and \\(N, D2\\)"):
        dcca_loss(torch.randn(5, 3), torch.randn(4, 3), DCCA_EPS)
