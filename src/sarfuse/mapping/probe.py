"""Per-pixel classifiers on frozen features: the paper's linear probe and a random forest.

Both train on the labelled pixels only (label ``IGNORE_INDEX`` = ignore, which also covers
invalid pixels),
gathered once from a feature tensor or from a stream of batches, so sparse labels cost nothing
and network features need one forward pass. The linear probe standardises every channel with
the training pixels' mean and std (kept as buffers), so raw bands and network features train
alike. Callers pick a classifier by name through :data:`CLASSIFIERS`, whose entries hold
everything else about a classifier (its options and their defaults, its loss, whether ``auto``
tries it, whether it exports to ONNX): adding one touches this module only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path, load_tensors
from sarfuse.mapping.forest import ForestArrays

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier

ClassifierName = Literal["linear", "rf"]  # the keys of CLASSIFIERS (a test holds them equal)
Batches = Iterable[tuple[Tensor, Tensor]]  # (features (B, C, H, W), labels (B, H, W))
FeatureSource = Tensor | np.ndarray | Batches | Callable[[], Batches]
_FORMAT = "sarfuse-classifier-v1"
NO_LABELS = f"no labelled pixels to train on (all labels are {IGNORE_INDEX})"


@dataclass(frozen=True)
class LinearOptions:
    """The linear probe's options (the paper's SGD), as a probe config carries them."""

    epochs: int = 50  # linear probe epochs (paper)
    lr: float = 0.01  # linear probe SGD learning rate (paper)
    momentum: float = 0.9  # linear probe SGD momentum (paper)
    probe_batch: int = 1  # labelled patches per SGD step


@dataclass(frozen=True)
class ForestOptions:
    """The random forest's options, as a probe config carries them."""

    n_trees: int = 100  # random forest size


class Classifier(Protocol):
    """What mapping needs from a trained classifier."""

    kind: ClassifierName
    in_channels: int
    num_classes: int

    def predict_proba(self, features: Tensor) -> Tensor:
        """``(N, C, H, W)`` features -> ``(N, K, H, W)`` class probabilities."""
        ...


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _batches(features: FeatureSource, labels: Tensor | np.ndarray | None) -> Batches:
    if isinstance(features, Tensor | np.ndarray):
        if labels is None:
            raise SarfuseError(None, "labels are required with a feature tensor")
        return [(_as_tensor(features), _as_tensor(labels))]
    if labels is not None:
        raise SarfuseError(None, "pass labels inside the batches when features is a stream")
    return features() if callable(features) else features


def labelled_pixels(
    features: FeatureSource,
    labels: Tensor | np.ndarray | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor, int]:
    """Gather labelled pixels: ``(X (P, C) float32, y (P,) int64, number of patches seen)``.

    With ``max_pixels`` a uniform sample without replacement is kept while streaming (each pixel
    gets a random key; the smallest keys survive), so memory stays bounded.
    """
    gen = torch.Generator().manual_seed(seed)
    xs, ys, keys, n_patches = [], [], [], 0
    for feats, labs in _batches(features, labels):
        feats, labs = _as_tensor(feats), _as_tensor(labs).long()
        if feats.ndim != 4 or labs.shape != (feats.shape[0], *feats.shape[2:]):
            raise SarfuseError(
                None, f"features {tuple(feats.shape)} and labels {tuple(labs.shape)} do not match"
            )
        n_patches += feats.shape[0]
        keep = (labs != IGNORE_INDEX).to(feats.device)
        xs.append(feats.permute(0, 2, 3, 1)[keep].detach().float().cpu())  # (p, C)
        ys.append(labs.to(feats.device)[keep].cpu())  # (p,)
        if max_pixels is not None:
            keys.append(torch.rand(len(ys[-1]), generator=gen))
            if sum(len(k) for k in keys) > max_pixels:
                kept = torch.cat(keys).topk(max_pixels, largest=False).indices
                xs, ys, keys = [torch.cat(xs)[kept]], [torch.cat(ys)[kept]], [torch.cat(keys)[kept]]
    if not ys or sum(len(y) for y in ys) == 0:
        raise SarfuseError(None, NO_LABELS)
    x, y = torch.cat(xs), torch.cat(ys)
    if not torch.isfinite(x).all():
        raise SarfuseError(
            None, f"features hold NaN or inf at labelled pixels; label them {IGNORE_INDEX}"
        )
    return x, y, n_patches


def _check_labels(y: Tensor, num_classes: int) -> None:
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.numel():
        raise SarfuseError(
            None, f"label {int(bad[0])} outside 0..{num_classes - 1} ({IGNORE_INDEX} = ignore)"
        )


class LinearProbe(nn.Module):
    """Per-pixel linear classifier (a 1x1 convolution) on standardised features."""

    kind: ClassifierName = "linear"

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.zeros_(self.conv.weight)  # convex problem: zero start, no dependence on global RNG
        nn.init.zeros_(self.conv.bias)
        self.register_buffer("mean", torch.zeros(in_channels))
        self.register_buffer("std", torch.ones(in_channels))

    def forward(self, features: Tensor) -> Tensor:
        """``(B, C, H, W)`` raw features -> ``(B, K, H, W)`` logits."""
        return self.conv((features - self.mean[:, None, None]) / self.std[:, None, None])

    @torch.no_grad()
    def predict_proba(self, features: Tensor, batch_size: int = 16) -> Tensor:
        x = _as_tensor(features)
        weight, bias = self.standardised_weights()
        out = [
            F.conv2d(chunk.to(weight.device).float(), weight, bias).softmax(1).to(x.device)
            for chunk in x.split(batch_size)
        ]
        return out[0] if len(out) == 1 else torch.cat(out)

    def standardised_weights(self) -> tuple[Tensor, Tensor]:
        """The 1x1 convolution with the standardisation folded in, w' = w / std and
        b' = b - w' mean: the same logits without two passes over the features."""
        weight = self.conv.weight / self.std[None, :, None, None]
        return weight, self.conv.bias - (weight[..., 0, 0] * self.mean).sum(1)


def softmax_regression_gradients(
    x: Tensor, y: Tensor, weight: Tensor, bias: Tensor, sample_weight: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the (weighted) mean cross-entropy of ``softmax(x W^T + b)`` and the summed loss.

    ``x`` (P, C), ``y`` (P,), ``weight`` (K, C), ``bias`` (K,), ``sample_weight`` (P,) or None.
    Closed form, (p - onehot)^T diag(w) x / sum(w): thousands of tiny probe steps then cost no
    autograd graph or optimiser bookkeeping. The returned loss sum is weighted too.
    """
    logits = torch.addmm(bias, x, weight.T)  # (P, K)
    log_p = logits.log_softmax(1)
    picked = -log_p.gather(1, y[:, None])[:, 0]  # (P,)
    residual = log_p.exp_()  # softmax, reused in place for (p - onehot) * w / sum(w)
    residual[torch.arange(len(y), device=y.device), y] -= 1.0
    if sample_weight is None:
        loss_sum = picked.sum()
        residual /= len(y)
    else:
        loss_sum = (picked * sample_weight).sum()
        residual *= (sample_weight / sample_weight.sum().clamp_min(1e-12))[:, None]
    return residual.T @ x, residual.sum(0), loss_sum


def train_linear_probe(
    features: FeatureSource,
    labels: Tensor | np.ndarray | None,
    num_classes: int,
    batch_size: int = 16,
    max_pixels: int | None = None,
    **fit: Any,
) -> tuple[LinearProbe, list[float]]:
    """SGD on cross-entropy over labelled pixels; returns the probe and the mean loss per epoch.

    The updates are those of ``torch.optim.SGD(lr, momentum)`` on the mean cross-entropy, with
    the gradients in closed form (:func:`softmax_regression_gradients`).

    ``features`` is ``(N, C, H, W)`` with ``labels`` ``(N, H, W)``, or (labels ``None``) an
    iterable of ``(features, labels)`` batches or a callable returning one. An epoch makes
    ``ceil(N / batch_size)`` steps, as with batches of ``batch_size`` patches, each on an equal
    random share of the labelled pixels. ``fit`` (epochs, lr, momentum, seed, device,
    progress) goes to :func:`fit_linear`.
    """
    x, y, n_patches = labelled_pixels(features, labels, max_pixels, fit.get("seed", 0))
    steps = max(1, math.ceil(n_patches / batch_size))
    return fit_linear(x, y, num_classes, None, steps_per_epoch=steps, **fit)


def fit_linear(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weights: Tensor | None = None,
    epochs: int = LinearOptions.epochs,
    lr: float = LinearOptions.lr,
    momentum: float = LinearOptions.momentum,
    steps_per_epoch: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[LinearProbe, list[float]]:
    """The linear probe fitted on pixels ``x`` (P, C), ``y`` (P,) with optional ``weights`` (P,).

    Each epoch splits a random permutation of the pixels into ``steps_per_epoch`` SGD steps.
    """
    _check_labels(y, num_classes)
    probe = LinearProbe(x.shape[1], num_classes)
    probe.mean.copy_(x.mean(0))
    probe.std.copy_(x.std(0, correction=0).clamp_min(1e-6))
    probe.to(device)
    x = ((x.to(device) - probe.mean) / probe.std).contiguous()  # (P, C) standardised once
    y = y.to(device)
    w = None if weights is None else weights.to(device=device, dtype=x.dtype)
    gen = torch.Generator().manual_seed(seed)
    weight, bias = probe.conv.weight.data.view(num_classes, -1), probe.conv.bias.data
    velocity_w, velocity_b = torch.zeros_like(weight), torch.zeros_like(bias)
    norm = len(y) if w is None else float(w.sum())
    history: list[float] = []
    for _ in tqdm(range(epochs), desc="linear probe", disable=not progress, leave=False):
        total = x.new_zeros(())
        for idx in torch.randperm(len(y), generator=gen).chunk(steps_per_epoch):
            idx = idx.to(device)
            part_w = None if w is None else w[idx]
            grad_w, grad_b, loss_sum = softmax_regression_gradients(
                x[idx], y[idx], weight, bias, part_w
            )
            velocity_w.mul_(momentum).add_(grad_w)  # torch.optim.SGD with momentum, no dampening
            velocity_b.mul_(momentum).add_(grad_b)
            weight.sub_(velocity_w, alpha=lr)
            bias.sub_(velocity_b, alpha=lr)
            total += loss_sum
        history.append(float(total) / norm)
    return probe.eval(), history


@dataclass
class RandomForestProbe:
    """A random forest over per-pixel features, with the scheme's class count.

    A freshly fitted scikit-learn forest predicts through scikit-learn (its compiled tree walk is
    ~2.5x faster, which matters for cross-validation and self-training); it is saved as plain
    arrays (:class:`ForestArrays`, no pickle), which predict the same to 1e-6 once loaded.
    """

    forest: ForestArrays | RandomForestClassifier
    in_channels: int
    num_classes: int
    kind: ClassifierName = "rf"

    def arrays(self) -> ForestArrays:
        """The forest as plain arrays (for saving)."""
        if isinstance(self.forest, ForestArrays):
            return self.forest
        return ForestArrays.from_sklearn(self.forest)

    def predict_proba(self, features: Tensor, chunk: int = 1 << 18) -> Tensor:
        x = _as_tensor(features)
        n, _, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).float().cpu().numpy()  # (NHW, C)
        proba = np.zeros((len(pixels), self.num_classes), dtype=np.float32)
        columns = getattr(self.forest, "classes_", getattr(self.forest, "classes", None))
        columns = np.asarray(columns).astype(np.int64)  # classes seen in training only
        for start in range(0, len(pixels), chunk):
            part = np.nan_to_num(pixels[start : start + chunk])  # invalid pixels may hold NaN
            proba[start : start + chunk, columns] = self.forest.predict_proba(part)
        out = torch.from_numpy(proba).reshape(n, h, w, self.num_classes).permute(0, 3, 1, 2)
        return out.contiguous().to(x.device)


def train_random_forest(
    features: FeatureSource,
    labels: Tensor | np.ndarray | None,
    num_classes: int,
    n_estimators: int = ForestOptions.n_trees,
    max_pixels: int | None = 200_000,
    seed: int = 0,
) -> RandomForestProbe:
    """Fit a random forest (all cores) on up to ``max_pixels`` labelled pixels drawn uniformly."""
    x, y, _ = labelled_pixels(features, labels, max_pixels, seed)
    return fit_forest(x, y, num_classes, None, n_estimators, seed)


def fit_forest(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weights: Tensor | None = None,
    n_estimators: int = ForestOptions.n_trees,
    seed: int = 0,
) -> RandomForestProbe:
    """A random forest fitted on pixels ``x`` (P, C), ``y`` (P,) with optional ``weights`` (P,)."""
    from sklearn.ensemble import RandomForestClassifier  # slow import (seconds): only when used

    _check_labels(y, num_classes)
    forest = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed)
    sample_weight = None if weights is None else weights.double().numpy()
    forest.fit(np.nan_to_num(x.numpy()), y.numpy(), sample_weight=sample_weight)
    return RandomForestProbe(forest, in_channels=x.shape[1], num_classes=num_classes)


def predict_proba(clf: Classifier, features: Tensor | np.ndarray) -> Tensor:
    """``(N, C, H, W)`` features -> ``(N, K, H, W)`` probabilities, for any classifier."""
    x = _as_tensor(features)
    if x.ndim != 4 or x.shape[1] != clf.in_channels:
        raise SarfuseError(
            None, f"classifier expects {clf.in_channels} feature channels, got {tuple(x.shape)}"
        )
    return clf.predict_proba(x)


def _train_rf(features, labels, num_classes, **options: Any) -> tuple[Classifier, list[float]]:
    return train_random_forest(features, labels, num_classes, **options), []


def _linear_state(clf: LinearProbe) -> dict[str, Any]:
    return {k: v.cpu() for k, v in clf.state_dict().items()}


def _linear_from_state(state: dict[str, Any], in_channels: int, num_classes: int) -> LinearProbe:
    probe = LinearProbe(in_channels, num_classes)
    probe.load_state_dict(state)
    return probe.eval()


def _rf_from_state(
    state: dict[str, Tensor] | bytes, in_channels: int, num_classes: int
) -> RandomForestProbe:
    if isinstance(state, bytes):
        raise SarfuseError(
            None,
            "this random forest was saved by an older sarfuse as a pickle, which could run code "
            "when loaded; retrain the probe",
        )
    forest = ForestArrays.from_state(state, in_channels)
    if len(forest.classes) and not 0 <= forest.classes.min() <= forest.classes.max() < num_classes:
        raise ValueError(f"forest classes outside 0..{num_classes - 1}")
    return RandomForestProbe(forest, in_channels, num_classes)


def _fit_linear_opts(x, y, num_classes, weights, opts: LinearOptions, seed, device, n_patches):
    steps = max(1, math.ceil(n_patches / opts.probe_batch))  # as with probe_batch patches a step
    fitted, history = fit_linear(
        x, y, num_classes, weights, opts.epochs, opts.lr, opts.momentum, steps, seed, device
    )
    fitted.history = history  # mean loss per epoch, saved with the probe
    return fitted


def _fit_forest_opts(x, y, num_classes, weights, opts: ForestOptions, seed, device, n_patches):
    return fit_forest(x, y, num_classes, weights, opts.n_trees, seed)


@dataclass(frozen=True)
class ClassifierKind:
    """Everything about one kind of classifier: how to train it (from a stream, or on pixel
    arrays), serialise and restore it, its options (a frozen dataclass whose fields and
    defaults a probe config carries under the same names), what it minimises (for model
    cards), its rank among ``auto``'s candidates (0 first, the reference; None: never tried)
    and whether it exports to ONNX. ``fit(x, y, num_classes, weights, options, seed, device,
    n_patches)``."""

    title: str
    train: Callable[..., tuple[Classifier, list[float]]]
    fit: Callable[..., Classifier]
    to_state: Callable[[Any], Any]
    from_state: Callable[[Any, int, int], Classifier]
    options: type
    loss: str
    auto_rank: int | None = None
    onnx: bool = False


CLASSIFIERS: dict[ClassifierName, ClassifierKind] = {
    "linear": ClassifierKind(
        "linear probe", train_linear_probe, _fit_linear_opts, _linear_state, _linear_from_state,
        LinearOptions, "cross-entropy on labelled pixels", auto_rank=1, onnx=True,
    ),
    "rf": ClassifierKind(
        "random-forest probe", _train_rf, _fit_forest_opts, lambda clf: clf.arrays().to_state(),
        _rf_from_state, ForestOptions, "random forest (Gini impurity)", auto_rank=0,
    ),
}  # fmt: skip
# what "auto" chooses among, in order of preference when cross-validation cannot tell
AUTO_CLASSIFIERS: tuple[str, ...] = tuple(
    sorted(
        (n for n, k in CLASSIFIERS.items() if k.auto_rank is not None),
        key=lambda n: CLASSIFIERS[n].auto_rank,
    )
)


def classifier_options(name: str, cfg: Any) -> Any:
    """The options of classifier ``name`` as probe config ``cfg`` sets them (a field of the
    option's name, else ``cfg.extra[name]``, else the option's default)."""
    kind = _kind(name)
    extra = getattr(cfg, "extra", {}) or {}
    values = {
        f.name: getattr(cfg, f.name, extra.get(f.name, f.default)) for f in fields(kind.options)
    }
    return kind.options(**values)


def train_classifier(
    name: ClassifierName,
    features: FeatureSource,
    labels: Tensor | np.ndarray | None,
    num_classes: int,
    **options: Any,
) -> tuple[Classifier, list[float]]:
    """Train the classifier called ``name``; returns it and its loss history (empty for rf)."""
    return _kind(name).train(features, labels, num_classes, **options)


def fit_classifier(
    name: ClassifierName,
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weights: Tensor | None,
    cfg: Any,
    n_patches: int,
) -> Classifier:
    """Fit the classifier called ``name`` on pixels ``x`` (P, C), ``y`` (P,) with the options,
    seed and device of a probe config ``cfg``; ``n_patches`` labelled patches set the linear
    probe's steps."""
    opts = classifier_options(name, cfg)
    return _kind(name).fit(x, y, num_classes, weights, opts, cfg.seed, cfg.device, n_patches)


def _kind(name: str) -> ClassifierKind:
    if name not in CLASSIFIERS:
        raise SarfuseError(None, f"unknown classifier {name!r}; choose from {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name]


@dataclass
class OffsetClassifier:
    """A classifier whose decision is moved by per-class log offsets ``b`` (see
    mapping/decision.py): probabilities ``p_k e^b_k``, renormalised, whose arg-max is that of
    ``log p + b``. Saved as the inner classifier plus the offsets."""

    inner: Classifier
    offsets: Tensor  # (K,)

    @property
    def kind(self) -> ClassifierName:
        return self.inner.kind

    @property
    def in_channels(self) -> int:
        return self.inner.in_channels

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    def predict_proba(self, features: Tensor) -> Tensor:
        proba = self.inner.predict_proba(features)
        moved = proba * self.offsets.exp().to(proba)[None, :, None, None]
        return moved / moved.sum(1, keepdim=True).clamp_min(1e-12)


def with_offsets(clf: Classifier, offsets: Tensor) -> Classifier:
    """``clf`` deciding by arg-max of log p + ``offsets``: a linear probe takes them into its
    bias (softmax(z + b) is exactly p e^b renormalised, and it still exports to ONNX); other
    classifiers are wrapped. Zero offsets return ``clf`` itself."""
    offsets = offsets.detach().float().cpu()
    if not offsets.any():
        return clf
    if isinstance(clf, LinearProbe):
        folded = copy.deepcopy(clf)
        with torch.no_grad():
            folded.conv.bias += offsets.to(folded.conv.bias)
        return folded
    return OffsetClassifier(clf, offsets)


def predict_pixels(clf: Classifier, x: Tensor) -> Tensor:
    """``(P, C)`` pixel features -> ``(P, K)`` class probabilities, for any classifier."""
    return clf.predict_proba(x.T[None, :, :, None])[0, :, :, 0].T  # as a (1, C, P, 1) image


def save_classifier(path: str | Path, clf: Classifier, meta: dict[str, Any] | None = None) -> Path:
    """Write ``clf`` and ``meta`` (plain JSON-like values) to ``path`` atomically."""
    offsets = clf.offsets if isinstance(clf, OffsetClassifier) else None
    inner = clf.inner if isinstance(clf, OffsetClassifier) else clf
    record = {
        "format": _FORMAT,
        "kind": clf.kind,
        "in_channels": clf.in_channels,
        "num_classes": clf.num_classes,
        "state": CLASSIFIERS[clf.kind].to_state(inner),
        "meta": dict(meta or {}),
    }
    if offsets is not None:
        record["offsets"] = offsets.clone()
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return Path(path)


def load_classifier(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Read a classifier saved by :func:`save_classifier`; returns it and its ``meta``.

    The file is read as tensors and plain data only (no unpickling of objects), so a crafted
    file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise SarfuseError(path, "classifier file not found")
    record = load_tensors(path, "not a sarfuse classifier file")
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise SarfuseError(path, "not a sarfuse classifier file")
    kind = record.get("kind")
    if not isinstance(kind, str) or kind not in CLASSIFIERS:
        raise SarfuseError(path, f"unknown classifier kind {kind!r}")
    try:
        clf = CLASSIFIERS[kind].from_state(
            record["state"], int(record["in_channels"]), int(record["num_classes"])
        )
        offsets = record.get("offsets")
        if offsets is not None:
            if not isinstance(offsets, Tensor) or offsets.shape != (clf.num_classes,):
                raise ValueError(f"decision offsets must be {clf.num_classes} numbers")
            if not torch.isfinite(offsets).all():
                raise ValueError("decision offsets are not finite")
            clf = OffsetClassifier(clf, offsets.float())
    except SarfuseError as err:
        raise SarfuseError(path, err.problem) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise SarfuseError(path, f"damaged classifier file ({err})") from None
    return clf, record.get("meta", {})
