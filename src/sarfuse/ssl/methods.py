"""Self-supervised methods, chosen through one registry: ``pixel`` (the paper's), and the
baselines ``mcl``, ``dcca`` (per pixel, ours) and ``dcca_image`` (the authors' DCCA).

A method is thin: it cuts the two views, runs the network, aligns, pools and calls a loss from
:mod:`sarfuse.ssl.losses`. It is an ``nn.Module`` so that its heads and an optional EMA teacher
train and travel with the training module's checkpoints. ``probe`` says what a probe reads
from a network the method trained: image-level methods train only the encoders, so they are
probed through the encoders' hypercolumns, as the authors probe them. A method is built from
the run's :class:`~sarfuse.ssl.config.PretrainConfig` and reads the settings it uses from it.
Usage by a training loop::

    method = build_method(PretrainConfig(method="pixel", ema=0.99), model=model)
    parts = method.loss(model, batch, sample_view_params(B, margin))  # {"loss": ..., ...}
    parts["loss"].backward(); optimiser.step(); method.after_step(model)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarfuse.errors import SarfuseError, check
from sarfuse.models.fusion import FUSIONS, FusionName, FusionNet, ProbeKind
from sarfuse.ssl.distributed import contrast_loss, world
from sarfuse.ssl.heads import ProjectionHead
from sarfuse.ssl.losses import DCCA_EPS, dcca_loss
from sarfuse.ssl.pooling import paired_superpixel_mean
from sarfuse.ssl.views import ViewParams, align_to_view1, make_views

if TYPE_CHECKING:
    from sarfuse.ssl.config import PretrainConfig

# the names of METHODS below (a test keeps the two equal)
MethodName = Literal["pixel", "mcl", "dcca", "dcca_image"]
NOT_SET_UP = "build the method with build_method(cfg, model=model)"


class EMATeacher(nn.Module):
    """A frozen copy of a network that follows it by exponential moving average.

    ``update(model)`` sets teacher = momentum * teacher + (1 - momentum) * model for parameters
    and copies buffers (BatchNorm statistics); calling the teacher never builds a graph.
    """

    def __init__(self, model: nn.Module, momentum: float) -> None:
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
    """Base of the methods: which fusions they accept, and the training-loop hooks.

    ``Method(cfg)`` takes the run's :class:`~sarfuse.ssl.config.PretrainConfig`; settings that
    no config field carries are class attributes of the method.
    """

    name: ClassVar[str]
    fusions: ClassVar[tuple[str, ...]] = tuple(FUSIONS)
    requirement: ClassVar[str] = ""  # why other fusions are refused, for the error message
    probe: ClassVar[ProbeKind] = "features"  # what a probe reads from the trained network

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()

    def setup(self, model: FusionNet) -> None:
        """Create state that depends on the network (called by :func:`build_method`)."""

    def after_step(self, model: FusionNet) -> None:
        """Called after every optimiser step."""

    def check_model(self, model: FusionNet) -> None:
        check_combination(model.fusion, self.name)

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        raise NotImplementedError


class ContrastMethod(Method):
    """A method built on the hard-negative contrastive loss (``cfg.contrast``)."""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        self.options = cfg.contrast

    def contrast(self, z1: Tensor, z2: Tensor) -> Tensor:
        """The loss of pairs (z1, z2); under DDP with negatives from every rank."""
        o = self.options
        return contrast_loss(z1, z2, o.temperature, o.tau_plus, o.beta)


class PixelMethod(ContrastMethod):
    """The paper's superpixel-level + image-level contrast between two views.

    View 2's features are aligned to view 1 and both are averaged in view 1's superpixels, over
    pixels valid in both views; the same superpixel in the two views is a positive pair, every
    other superpixel of the batch a negative. For late fusion the pairs cross sensors: view-1 S1
    with view-2 S2 and view-1 S2 with view-2 S1, at both levels. Multi-scale segments
    (B, S, h, w) average the superpixel term over the S scales. With ``ema`` > 0, view 2 goes
    through an EMA teacher of the network.

    ``w_cross`` > 0 adds the cross-sensor image term of the authors' intermediate model: inside
    each view, the S1 branch's image feature against the S2 branch's (networks with separate
    branches only). ``projection`` puts a :class:`ProjectionHead` per contrasted map between
    the features and the superpixel contrast, as the authors do; the probe reads the features.
    ``max_segments`` caps the superpixels pooled per crop (None: all).
    """

    name = "pixel"
    max_segments: int | None = None

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        self.w_superpixel, self.w_image, self.w_cross = cfg.w_superpixel, cfg.w_image, cfg.w_cross
        self.ema, self.projection = cfg.ema, cfg.projection
        self.teacher: EMATeacher | None = None
        self.heads = nn.ModuleDict()  # contrasted map name -> projection head

    def setup(self, model: FusionNet) -> None:
        if self.ema > 0 and self.teacher is None:
            self.teacher = EMATeacher(model, self.ema)
        if self.projection and not self.heads:
            maps = {k for pair in self._keys(model.out_dims)[0] for k in pair}
            self.heads.update({k: ProjectionHead(model.out_dims[k]) for k in sorted(maps)})

    def check_model(self, model: FusionNet) -> None:
        super().check_model(model)
        check(
            self.w_cross == 0 or "s1_image" in model.out_dims,
            None,
            f"w_cross needs separate S1 and S2 image features, which {model.fusion} fusion lacks",
        )

    def after_step(self, model: FusionNet) -> None:
        if self.teacher is not None:
            self.teacher.update(model)

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        check(self.ema == 0 or self.teacher is not None, None, f"no EMA teacher: {NOT_SET_UP}")
        check(not self.projection or len(self.heads) > 0, None, f"no heads: {NOT_SET_UP}")
        check("segments" in batch, None, "the pixel method needs superpixel segments in the batch")
        view1, view2 = make_views(batch, params)
        out1 = _run(model, view1)
        out2 = _run(self.teacher if self.teacher is not None else model, view2)
        valid2, overlap = align_to_view1(view2["valid"], params)
        mask = view1["valid"] & valid2 & overlap  # (B, c, c)
        segments = view1["segments"]
        segments = segments[:, None] if segments.ndim == 3 else segments  # (B, S, c, c)
        pixel_keys, image_keys = self._keys(out1)
        aligned = [
            (self._project(a, out1[a]), align_to_view1(self._project(b, out2[b]), params)[0])
            for a, b in pixel_keys
        ]
        sp = torch.stack(
            [
                self._superpixel_term(a, b, segments[:, s], mask)
                for a, b in aligned
                for s in range(segments.shape[1])
            ]
        ).mean()
        img = torch.stack([self.contrast(out1[a], out2[b]) for a, b in image_keys]).mean()
        total = self.w_superpixel * sp + self.w_image * img
        parts = {"loss": total, "superpixel": sp, "image": img}
        if self.w_cross > 0:  # views through the EMA teacher carry no gradient
            student = [out1] if self.teacher is not None else [out1, out2]
            cross = torch.stack([self.contrast(o["s1_image"], o["s2_image"]) for o in student])
            parts["cross"] = cross.mean()
            parts["loss"] = parts["loss"] + self.w_cross * parts["cross"]
        return parts

    @staticmethod
    def _keys(out: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(view-1, view-2) output names of the positive pairs of per-pixel maps and of images."""
        if "s1_features" in out:  # separate sensor branches: contrast across sensors
            cross = [("s1", "s2"), ("s2", "s1")]
            pixel = [(f"{a}_features", f"{b}_features") for a, b in cross]
            return pixel, [(f"{a}_image", f"{b}_image") for a, b in cross]
        return [("features", "features")], [("image", "image")]

    def _project(self, name: str, x: Tensor) -> Tensor:
        return self.heads[name](x) if name in self.heads else x

    def _superpixel_term(self, f1: Tensor, f2: Tensor, segments: Tensor, mask: Tensor) -> Tensor:
        p1, p2, _, _ = paired_superpixel_mean(f1, f2, segments, mask, self.max_segments)
        # under DDP every rank must join the gather, whatever its own superpixel count
        return self.contrast(p1, p2) if len(p1) >= 2 or world()[1] > 1 else _zero(f1)


class MCLMethod(ContrastMethod):
    """Multi-view contrast of S1 vs S2 image features of the same crop (no superpixels).

    The loss trains the encoders and the per-sensor image heads only, so the network is probed
    through its encoder hypercolumns.
    """

    name = "mcl"
    fusions = ("intermediate", "late")
    requirement = "it contrasts separate S1 and S2 image features"
    probe = "hypercolumn"

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        view1, _ = make_views(batch, params)
        out = _run(model, view1)
        return {"loss": self.contrast(out["s1_image"], out["s2_image"])}


class DCCAMethod(Method):
    """Deep CCA between the S1 and S2 per-pixel features of valid pixels of view 1.

    Our per-pixel variant, probed through the decoder features it trains; the authors' DCCA is
    image-level (:class:`DCCAImageMethod`). At most ``max_pixels`` random pixels of the batch
    enter the covariances, which bounds the cost; ``k`` keeps only the top-k correlations.
    """

    name = "dcca"
    fusions = ("late",)
    requirement = "it correlates separate S1 and S2 per-pixel features"
    eps: float = DCCA_EPS
    k: int | None = None
    max_pixels: int = 4096

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


class DCCAImageMethod(Method):
    """The authors' DCCA: deep CCA between the S1 and S2 image features of view-1 crops.

    Each sensor's image feature (its pooled encoder bottleneck through the network's image
    head) goes through a linear layer to ``dim`` (the authors' 10) and L2 normalisation, and
    all ``dim`` correlations over the batch are maximised. The authors use 1000 crops a batch:
    with few more crops than ``dim`` the batch correlations overstate the true ones. Only the
    encoders and heads train, so the network is probed through its encoder hypercolumns.
    """

    name = "dcca_image"
    fusions = ("intermediate", "late")
    requirement = "it correlates separate S1 and S2 image features"
    probe = "hypercolumn"
    sensors: ClassVar[tuple[str, str]] = ("s1_image", "s2_image")
    eps: float = DCCA_EPS
    dim: int = 10  # size of the projected image features (the authors')

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        self.heads = nn.ModuleDict()  # image output name -> linear layer to dim

    def setup(self, model: FusionNet) -> None:
        if not self.heads:
            self.heads.update({k: nn.Linear(model.out_dims[k], self.dim) for k in self.sensors})

    def loss(self, model: FusionNet, batch: dict, params: ViewParams) -> dict[str, Tensor]:
        self.check_model(model)
        check(len(self.heads) > 0, None, f"no heads: {NOT_SET_UP}")
        view1, _ = make_views(batch, params)
        out = _run(model, view1)
        h1, h2 = (F.normalize(self.heads[k](out[k]), dim=1) for k in self.sensors)  # (B, dim)
        loss = dcca_loss(h1, h2, self.eps)
        return {"loss": loss, "correlation": -loss.detach()}


METHODS: dict[str, type[Method]] = {
    "pixel": PixelMethod,
    "mcl": MCLMethod,
    "dcca": DCCAMethod,
    "dcca_image": DCCAImageMethod,
}


def method_class(name: str) -> type[Method]:
    """The registered method ``name``, or a one-line :class:`SarfuseError` naming the choices."""
    if name not in METHODS:
        raise SarfuseError(None, f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def probe_kind(method: str) -> ProbeKind:
    """What a probe reads from a network pretrained with ``method`` (:meth:`FusionNet.probe`)."""
    return method_class(method).probe


def check_combination(fusion: FusionName, method: MethodName) -> None:
    """Raise a one-line :class:`SarfuseError` if ``method`` cannot train a ``fusion`` network."""
    cls = method_class(method)
    if fusion not in FUSIONS:
        raise SarfuseError(None, f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if fusion not in cls.fusions:
        raise SarfuseError(
            None,
            f"method {method} cannot train {fusion} fusion because {cls.requirement}; "
            f"use --fusion {' or '.join(cls.fusions)}",
        )


def valid_combinations() -> list[tuple[str, str]]:
    """All (fusion, method) pairs that can be trained."""
    return [(f, m) for m, cls in METHODS.items() for f in FUSIONS if f in cls.fusions]


def build_method(cfg: PretrainConfig, *, model: FusionNet | None = None) -> Method:
    """The method ``cfg.method`` with the settings of ``cfg``; checks it against ``model``'s
    fusion (or ``cfg.fusion`` when no model is given and it is not ``auto``) and, given
    ``model``, creates the state that depends on it (the EMA teacher, the heads)."""
    cls = method_class(cfg.method)
    fusion = model.fusion if model is not None else cfg.fusion
    if fusion != "auto":
        check_combination(fusion, cfg.method)
    method = cls(cfg)
    if model is not None:
        method.check_model(model)
        method.setup(model)
    return method
