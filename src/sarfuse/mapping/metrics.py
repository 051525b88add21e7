"""Segmentation scores from a confusion matrix: OA, AA, Cohen's kappa, mIoU, per-class IoU.

Everything is derived from one integer confusion matrix (rows = truth, columns = prediction,
counted by torchmetrics) so that scores of many batches or tiles add up exactly and can be
checked by hand; the tests check the scores against torchmetrics' own. Classes absent
from the truth are reported and left out of the means (their recall and IoU are undefined),
except in ``miou_all``, the authors' mIoU, which counts them as IoU 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.errors import SarfuseError

ArrayLike = torch.Tensor | np.ndarray
EDGE_WIDTH = 2  # pixels from a class edge that count as "edge" in the error split


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def confusion_matrix(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    mask: ArrayLike | None = None,
) -> torch.Tensor:
    """Count (truth, prediction) pairs into an int64 ``(K, K)`` matrix, rows = truth.

    ``pred`` and ``target`` have the same shape, ``(N,)`` or ``(B, H, W)``. Pixels whose target
    is ``ignore_index`` or where ``mask`` (same shape, bool) is false are not counted.
    """
    pred_t = _as_tensor(pred).long()
    target_t = _as_tensor(target).long().to(pred_t.device)
    if pred_t.shape != target_t.shape:
        raise SarfuseError(
            None, f"prediction shape {tuple(pred_t.shape)} != target shape {tuple(target_t.shape)}"
        )
    keep = target_t != ignore_index
    if mask is not None:
        keep &= _as_tensor(mask).to(keep.device).bool()
    p, t = pred_t[keep], target_t[keep]  # (M,)
    for name, v in (("target", t), ("prediction", p)):
        bad = v[(v < 0) | (v >= num_classes)]
        if bad.numel():
            raise SarfuseError(
                None,
                f"{name} holds class {int(bad[0])} outside 0..{num_classes - 1} "
                f"(ignore index {ignore_index})",
            )
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    if t.numel() == 0:  # torchmetrics wants at least one pixel
        return torch.zeros(num_classes, num_classes, dtype=torch.int64)
    cm = multiclass_confusion_matrix(p, t, num_classes, validate_args=False)  # checked above
    return cm.long().cpu()


def edge_mask(
    labels: np.ndarray, width: int = EDGE_WIDTH, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Labelled pixels with another labelled class within ``width`` px (Chebyshev distance).

    ``labels`` is (H, W) or (B, H, W); ignored pixels are never edge pixels and never make one.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    lab = np.asarray(labels).astype(np.int64)
    ignored = lab == ignore_index
    size = [1] * (lab.ndim - 2) + [2 * width + 1] * 2
    low = minimum_filter(np.where(ignored, ignore_index, lab), size=size, mode="nearest")
    high = maximum_filter(np.where(ignored, -1, lab), size=size, mode="nearest")
    return ~ignored & ((low < lab) | (high > lab))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores(cm: ArrayLike, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Overall/average accuracy, kappa and mIoU of a ``(K, K)`` confusion matrix (rows = truth).

    AA and mIoU average over the classes present in the truth; the others are listed under
    ``absent_classes`` and get ``None`` for IoU and accuracy. ``miou_all`` averages over all K
    classes with IoU 0 for the absent ones (the authors' definition: comparable with their
    figures, and lower whenever a split misses a class). Kappa is 1 in the degenerate case
    where truth and prediction are one and the same single class (0/0 otherwise).
    """
    m = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise SarfuseError(None, f"confusion matrix must be square, got shape {m.shape}")
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise SarfuseError(None, f"{len(names)} class names for a {k}-class confusion matrix")
    total = int(m.sum())
    if total == 0:
        raise SarfuseError(None, "no labelled pixels to score (empty confusion matrix)")
    diag = np.diag(m).astype(np.float64)
    truth, predicted = m.sum(1).astype(np.float64), m.sum(0).astype(np.float64)
    present = truth > 0
    recall = _ratio(diag, truth)
    iou = _ratio(diag, truth + predicted - diag)
    oa = diag.sum() / total
    expected = float((truth * predicted).sum()) / total**2  # chance agreement p_e
    kappa = 1.0 if expected == 1.0 else (oa - expected) / (1.0 - expected)
    per_class = {
        name: {
            "iou": float(iou[i]) if present[i] else None,
            "accuracy": float(recall[i]) if present[i] else None,
            "support": int(truth[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "OA": float(oa),
        "AA": float(recall[present].mean()),
        "kappa": float(kappa),
        "mIoU": float(iou[present].mean()),
        "miou_all": float(iou.sum() / k),  # an absent class has no true positive: IoU 0
        "per_class": per_class,
        "absent_classes": [n for i, n in enumerate(names) if not present[i]],
        "confusion": m.tolist(),
    }


def format_table(s: dict[str, Any]) -> str:
    """Plain-text table of :func:`scores` output for the terminal."""
    width = max([5, *(len(n) for n in s["per_class"])])
    lines = [
        f"OA {s['OA']:.4f}   AA {s['AA']:.4f}   kappa {s['kappa']:.4f}   mIoU {s['mIoU']:.4f}",
        f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'support':>10}",
    ]
    for name, c in s["per_class"].items():
        iou = "-" if c["iou"] is None else f"{c['iou']:.4f}"
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.4f}"
        lines.append(f"{name:<{width}}  {iou:>7}  {acc:>7}  {c['support']:>10d}")
    if s["absent_classes"]:
        lines.append(
            "absent from the truth, left out of AA and mIoU: " + ", ".join(s["absent_classes"])
        )
        lines.append(f"mIoU counting them as IoU 0 (the authors' mIoU): {s['miou_all']:.4f}")
    return "\n".join(lines)
