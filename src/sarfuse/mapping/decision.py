"""Decisions for IoU: class offsets that maximise the expected IoU of a map, not its accuracy.

A per-pixel arg-max maximises the expected number of correct pixels. Maps are judged by IoU
(per class, or its mean), whose best decision differs: with calibrated probabilities it
predicts a class a little more often than the arg-max does when that class is scarce and its
edges are uncertain (the optimal F1 threshold is F1*/2, Lipton et al. 2014; for IoU see
Nowozin, CVPR 2014). The decision here is ``argmax_k(log p_k + b_k)``; the offsets ``b`` are
chosen to maximise the IoU expected under the classifier's own probabilities on unlabelled
pixels, so no label is spent on them:

    E[C_jk] = sum over pixels predicted k of p_j
    E[IoU_k] = E[C_kk] / (E[row_k] + E[col_k] - E[C_kk])

(a ratio of expectations, close to the expected ratio over thousands of pixels). The search
tries, for one class at a time, the offsets at which pixels switch class (quantiles of their
margins); with two classes that is a threshold on p_1, found in one pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-6  # floor for log-probabilities (a forest gives exact zeros)
MAX_OFFSET = 3.0  # |b_k| <= 3: a probability ratio of e^3 ~ 20, beyond which no offset is trusted


def expected_confusion(proba: Tensor, pred: Tensor) -> Tensor:
    """(K, K) expected confusion, rows = true class, columns = predicted, from ``proba`` (P, K)
    and the decision ``pred`` (P,)."""
    k = proba.shape[1]
    onehot = torch.nn.functional.one_hot(pred.long(), k).to(proba.dtype)  # (P, K)
    return proba.T @ onehot


def expected_iou(proba: Tensor, pred: Tensor, target: int | None = None) -> float:
    """Expected IoU of class ``target``, or the mean over classes expected to be present."""
    return confusion_iou(expected_confusion(proba, pred), target)


def confusion_iou(cm: Tensor, target: int | None = None) -> float:
    """IoU of class ``target`` of a (K, K) confusion matrix (rows = truth), or the mean over
    the classes present in it."""
    cm = cm.double()
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    iou = inter / union.clamp_min(EPS)
    if target is not None:
        return float(iou[target])
    present = union > EPS
    return float(iou[present].mean()) if present.any() else 0.0


def decide(proba: Tensor, offsets: Tensor) -> Tensor:
    """The class of each pixel (P,) under ``offsets`` (K,): arg-max of log p + b, computed as
    the arg-max of p e^b like :class:`~sarfuse.mapping.probe.OffsetClassifier` predicts."""
    return (proba * offsets.to(proba).exp()).argmax(1)


def iou_offsets(
    proba: Tensor, target: int | None = None, rounds: int = 3, grid: int | None = None
) -> Tensor:
    """Offsets (K,) maximising :func:`expected_iou` of ``proba`` (P, K) (zeros when no change
    helps). Ties keep the arg-max: an offset is only taken if it raises the expected IoU.
    ``grid`` switching points are tried per class (default 256 with two classes, else 64)."""
    proba = proba.double()
    k = proba.shape[1]
    grid = grid or (256 if k == 2 else 64)
    offsets = torch.zeros(k, dtype=torch.float64)
    if len(proba) == 0 or k < 2:
        return offsets.float()
    logp = proba.clamp_min(EPS).log()
    best = expected_iou(proba, decide(proba, offsets), target)
    for _ in range(rounds if k > 2 else 1):  # two classes: class 1's offset is the threshold
        changed = False
        for c in range(1, k) if k == 2 else range(k):
            tried = _offset_candidates(logp, offsets, c, grid)
            for value in tried.tolist():
                trial = offsets.clone()
                trial[c] = value
                score = expected_iou(proba, decide(proba, trial), target)
                if score > best + 1e-9:
                    best, offsets, changed = score, trial, True
        if not changed:
            break
    return offsets.float()


def _offset_candidates(logp: Tensor, offsets: Tensor, c: int, grid: int) -> Tensor:
    """Offsets of class ``c`` between the points at which pixels switch to or from it: the
    margins by which ``c`` loses (or wins) each pixel, or ``grid`` quantiles of them, within
    +-MAX_OFFSET; each candidate lies midway between two switching points."""
    scored = logp + offsets
    scored[:, c] = -torch.inf
    margin = scored.max(1).values - logp[:, c]  # the offset c needs to win each pixel
    margin = margin[margin.abs() <= MAX_OFFSET].unique()  # sorted
    if len(margin) > grid:
        margin = torch.quantile(margin, torch.linspace(0, 1, grid, dtype=margin.dtype)).unique()
    if len(margin) == 0:
        return margin
    ends = torch.stack([margin[0] - 0.05, margin[-1] + 0.05])
    mids = torch.cat([ends[:1], (margin[:-1] + margin[1:]) / 2, ends[1:]])
    return mids.clamp(-MAX_OFFSET, MAX_OFFSET)


def describe(note: dict) -> str:
    """One line on the decision a probe took (its metrics.json ``decision``), for the CLI."""
    if note.get("rule") != "iou":
        why = f" ({note['reason']})" if "reason" in note else ""
        return f"decision: most probable class{why}"
    target = note["target"] if note["target"] == "mean IoU" else f"{note['target']} IoU"
    return (
        f"decision: class offsets {note['offsets']} for the {target}, expected "
        f"{note['expected_iou_argmax']:.3f} -> {note['expected_iou']:.3f} on "
        f"{note['pixels']} unlabelled pixels"
    )
