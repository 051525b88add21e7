"""Self-supervised methods, chosen through one registry: ``pixel`` (the paper's), ``mcl``, ``dcca``.

A method is thin: it cuts the two views, runs the network, aligns, pools and calls a loss from
:mod:`sarfuse.ssl.losses`. It is an ``nn.Module`` only so that an optional EMA teacher travels
with the training module's checkpoints. Usage by a training loop::

    method = build_method("pixel", fusion="late", model=model, ema=0.99)
    parts = method.loss(model, batch, sample_view_params(B, margin))  # {"loss": ..., ...}
    parts["loss"].backward(); optimiser.step(); method.after_step(model)
"""

from __future__ import annotations

import copy
import inspect
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from sarfuse.errors import SarfuseError, check
from sarfuse.models.fusion import FUSIONS, FusionName, FusionNet
from sarfuse.ssl.losses import dcca_loss, hard_negative_nt_xent
from sarfuse.ssl.pooling import paired_superpixel_mean
from sarfuse.ssl.views import ViewParams, align_to_view1, make_views

MethodName = Literal["pixel", "mcl", "dcca"]


class EMATeacher(nn.Module):
    """A frozen copy of a network that follows it by exponential moving average.

    ``update(model)`` sets teacher = momentum * teacher + (1 - momentum) * model for parameters
    and copies buffers (BatchNorm statistics); calling the teacher never builds a graph.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.99) -> None:
        super().__init__()
        check(0.0 < momentum < 1.0, None, f"EMA momentum must be in (0, 1), got {momentum}")
        self.momentum = momentum
        self.module = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        pairs = zip(self.module.parameters(), model.parameters(), strict=True)
        for teacher, student in pairs:
            teacher.lerp_(student.detach(), 1.0 - self.momentum)
        for teacher, student in zip(self.module.buffers(), model.buffers(), strict=True):
            teacher.copy_(student)

    @torch.no_grad()
    def forward(self, s1: Tensor | None, s2: Tensor | None) -> dict[str, Tensor]:
        return self.module(s1, s2)


def _zero(like: Tensor) -> Tensor:
    """A zero loss still attached to the graph (no pairs to contrast in this batch)."""
    return like.sum() * 0.0


def _run(model: nn.Module, view: dict) -> dict[str, Tensor]:
    return model(view.get("s1"), view.get("s2"))


class Method(nn.Module):
    """Base of the methods: which fusions they accept, and the training-loop hooks."""

    name: ClassVar[str]
    fusions: ClassVar[tuple[str, ...]] = tuple(FUSIONS)
    requirement: ClassVar[str] = ""  # why other fusions are refused, for the error message

    def setup(self, model: FusionNet) -> None:
        """Create state that depends on the network (called by :func:`build_method`)."""

    def after_step(self, model: FusionNet) -> None:
        """Called after every optimiser step."""

    def check_model(self, model: FusionNet) -> None:
        check_combination(model.fusion, self.name)

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        raise NotImplementedError


class ContrastMethod(Method):
    """A method built on the hard-negative contrastive loss (paper defaults)."""

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.tau_plus, self.beta = temperature, tau_plus, beta

    def contrast(self, z1: Tensor, z2: Tensor) -> Tensor:
        return hard_negative_nt_xent(z1, z2, self.temperature, self.tau_plus, self.beta)


class PixelMethod(ContrastMethod):
    """The paper's superpixel-level + image-level contrast between two views.

    View 2's features are aligned to view 1 and both are averaged in view 1's superpixels, over
    pixels valid in both views; the same superpixel in the two views is a positive pair, every
    other superpixel of the batch a negative. For late fusion the pairs cross sensors: view-1 S1
    with view-2 S2 and view-1 S2 with view-2 S1, at both levels. Multi-scale segments
    (B, S, h, w) average the superpixel term over the S scales. With ``ema`` > 0, view 2 goes
    through an EMA teacher of the network.
    """

    name = "pixel"

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        beta: float = 1.0,
        w_superpixel: float = 1.0,
        w_image: float = 1.0,
        ema: float = 0.0,
        max_segments: int | None = None,
    ) -> None:
        super().__init__(temperature, tau_plus, beta)
        self.w_superpixel, self.w_image = w_superpixel, w_image
        self.ema, self.max_segments = ema, max_segments
        self.teacher: EMATeacher | None = None

    def setup(self, model: FusionNet) -> None:
        if self.ema > 0 and self.teacher is None:
            self.teacher = EMATeacher(model, self.ema)

    def after_step(self, model: FusionNet) -> None:
        if self.teacher is not None:
            self.teacher.update(model)

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        check(
            self.ema == 0 or self.teacher is not None,
            None,
            "the EMA teacher is missing: build the method with build_method(..., model=model)",
        )
        check("segments" in batch, None, "the pixel method needs superpixel segments in the batch")
        view1, view2 = make_views(batch, params)
        out1 = _run(model, view1)
        out2 = _run(self.teacher if self.teacher is not None else model, view2)
        valid2, overlap = align_to_view1(view2["valid"], params)
        mask = view1["valid"] & valid2 & overlap  # (B, c, c)
        segments = view1["segments"]
        segments = segments[:, None] if segments.ndim == 3 else segments  # (B, S, c, c)
        pixel_pairs, image_pairs = self._pairs(out1, out2)
        aligned = [(a, align_to_view1(b, params)[0]) for a, b in pixel_pairs]
        sp = torch.stack(
            [
                self._superpixel_term(a, b, segments[:, s], mask)
                for a, b in aligned
                for s in range(segments.shape[1])
            ]
        ).mean()
        img = torch.stack([self.contrast(a, b) for a, b in image_pairs]).mean()
        total = self.w_superpixel * sp + self.w_image * img
        return {"loss": total, "superpixel": sp, "image": img}

    @staticmethod
    def _pairs(out1: dict, out2: dict) -> tuple[list, list]:
        """(view-1, view-2) positive pairs of per-pixel maps and of image features."""
        if "s1_features" in out1:  # separate sensor branches: contrast across sensors
            cross = [("s1", "s2"), ("s2", "s1")]
            pixel = [(out1[f"{a}_features"], out2[f"{b}_features"]) for a, b in cross]
            image = [(out1[f"{a}_image"], out2[f"{b}_image"]) for a, b in cross]
            return pixel, image
        return [(out1["features"], out2["features"])], [(out1["image"], out2["image"])]

    def _superpixel_term(self, f1: Tensor, f2: Tensor, segments: Tensor, mask: Tensor) -> Tensor:
        p1, p2, _, _ = paired_superpixel_mean(f1, f2, segments, mask, self.max_segments)
        return self.contrast(p1, p2) if len(p1) >= 2 else _zero(f1)


class MCLMethod(ContrastMethod):
    """Multi-view contrast of S1 vs S2 image features of the same crop (no superpixels)."""

    name = "mcl"
    fusions = ("intermediate", "late")
    requirement = "it contrasts separate S1 and S2 image features"

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        view1, _ = make_views(batch, params)
        out = _run(model, view1)
        return {"loss": self.contrast(out["s1_image"], out["s2_image"])}


class DCCAMethod(Method):
    """Deep CCA between the S1 and S2 per-pixel features of valid pixels of view 1.

    At most ``max_pixels`` random pixels of the batch enter the covariances, which bounds the
    cost; ``k`` keeps only the top-k correlations.
    """

    name = "dcca"
    fusions = ("late",)
    requirement = "it correlates separate S1 and S2 per-pixel features"

    def __init__(self, eps: float = 1e-3, k: int | None = None, max_pixels: int = 4096) -> None:
        super().__init__()
        self.eps, self.k, self.max_pixels = eps, k, max_pixels

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        view1, _ = make_views(batch, params)
        out = _run(model, view1)
        mask = view1["valid"]  # (B, c, c)
        h1 = out["s1_features"].permute(0, 2, 3, 1)[mask]  # (P, D/2)
        h2 = out["s2_features"].permute(0, 2, 3, 1)[mask]
        if len(h1) > self.max_pixels:
            keep = torch.randperm(len(h1))[: self.max_pixels].to(h1.device)
            h1, h2 = h1[keep], h2[keep]
        if len(h1) < 2:
            zero = _zero(out["features"])
            return {"loss": zero, "correlation": zero.detach()}
        loss = dcca_loss(h1, h2, self.eps, self.k)
        return {"loss": loss, "correlation": -loss.detach()}


METHODS: dict[str, type[Method]] = {"pixel": PixelMethod, "mcl": MCLMethod, "dcca": DCCAMethod}


def check_combination(fusion: FusionName, method: MethodName) -> None:
    """Raise a one-line :class:`SarfuseError` if ``method`` cannot train a ``fusion`` network."""
    if method not in METHODS:
        raise SarfuseError(None, f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if fusion not in FUSIONS:
        raise SarfuseError(None, f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    cls = METHODS[method]
    if fusion not in cls.fusions:
        raise SarfuseError(
            None,
            f"method {method} cannot train {fusion} fusion because {cls.requirement}; "
            f"use --fusion {' or '.join(cls.fusions)}",
        )


def valid_combinations() -> list[tuple[str, str]]:
    """All (fusion, method) pairs that can be trained."""
    return [(f, m) for m, cls in METHODS.items() for f in FUSIONS if f in cls.fusions]


def build_method(
    name: MethodName,
    *,
    fusion: FusionName | None = None,
    model: FusionNet | None = None,
    **opts: object,
) -> Method:
    """The method ``name`` with its options; checks it against ``fusion`` (or ``model.fusion``)
    and, given ``model``, creates the state that depends on it (the EMA teacher)."""
    if name not in METHODS:
        raise SarfuseError(None, f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    fusion = fusion if fusion is not None or model is None else model.fusion
    if fusion is not None:
        check_combination(fusion, name)
    cls = METHODS[name]
    allowed = list(inspect.signature(cls).parameters)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise SarfuseError(
            None,
            f"method {name} has no option {', '.join(unknown)}; its options are "
            f"{', '.join(allowed) or 'none'}",
        )
    method = cls(**opts)
    if model is not None:
        method.setup(model)
    return method
