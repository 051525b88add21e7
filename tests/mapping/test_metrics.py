"""Known-answer tests for the confusion matrix and scores, and agreement with torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from sarfuse.errors import SarfuseError
from sarfuse.mapping.metrics import confusion_matrix, format_table, scores

# Worked on paper: rows = truth, columns = prediction.
CM3 = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def _pairs_from(cm: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-level (pred, target) pairs that produce ``cm``, shuffled."""
    t, p = [], []
    for i, j in np.ndindex(cm.shape):
        t += [i] * int(cm[i, j])
        p += [j] * int(cm[i, j])
    order = np.random.default_rng(seed).permutation(len(t))
    return np.array(p)[order], np.array(t)[order]


def test_confusion_matrix_known_answer_with_ignore_pixels():
    pred, target = _pairs_from(CM3)
    # 16 counted pixels plus 4 ignore pixels whose predictions must not count, as (B, H, W)
    pred = np.concatenate([pred, [0, 1, 2, 2]]).reshape(2, 2, 5)
    target = np.concatenate([target, [255] * 4]).reshape(2, 2, 5)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 3)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), CM3)
    np.testing.assert_array_equal(confusion_matrix(pred, target, 3).numpy(), CM3)


def test_mask_excludes_pixels():
    pred = np.array([0, 1, 1, 2])
    target = np.array([0, 1, 2, 2])
    mask = np.array([True, True, False, True])
    cm = confusion_matrix(pred, target, 3, mask=mask)
    np.testing.assert_array_equal(cm.numpy(), np.eye(3, dtype=np.int64))


def test_scores_known_answer():
    s = scores(CM3, ["a", "b", "c"])
    assert s["OA"] == pytest.approx(12 / 16)
    assert s["AA"] == pytest.approx((5 / 6 + 3 / 6 + 4 / 4) / 3)
    # p_o = 12/16, p_e = (6*7 + 6*4 + 4*5) / 16^2 = 86/256 -> kappa = 106/170
    assert s["kappa"] == pytest.approx(106 / 170)
    assert s["mIoU"] == pytest.approx((5 / 8 + 3 / 7 + 4 / 5) / 3)
    assert s["per_class"]["b"] == {"iou": pytest.approx(3 / 7), "accuracy": 0.5, "support": 6}
    assert s["absent_classes"] == []
    assert s["miou_all"] == pytest.approx(s["mIoU"])  # every class present: the same mean
    assert s["confusion"] == CM3.tolist()


def test_absent_class_is_reported_and_left_out_of_means():
    cm = np.array([[2, 0, 0, 1], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    s = scores(cm)
    assert s["absent_classes"] == ["3"]
    assert s["per_class"]["3"] == {"iou": None, "accuracy": None, "support": 0}
    assert s["mIoU"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert s["AA"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert "absent from the truth" in format_table(s)


def test_miou_all_counts_absent_classes_as_zero():
    """Class 3 never occurs and is never predicted; class 2 never occurs but is predicted once."""
    cm = np.array([[3, 1, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    s = scores(cm)
    # IoU: class 0 = 3 / 5, class 1 = 2 / 3, classes 2 and 3 absent
    assert s["mIoU"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert s["miou_all"] == pytest.approx((3 / 5 + 2 / 3 + 0 + 0) / 4)
    assert f"{s['miou_all']:.4f}" in format_table(s)


def test_perfect_single_class_kappa_is_one():
    assert scores(np.array([[7, 0], [0, 0]]))["kappa"] == 1.0


def test_bad_input_raises():
    with pytest.raises(SarfuseError, match="outside 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(SarfuseError, match="outside 0..2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), 3)
    with pytest.raises(SarfuseError, match="shape"):
        confusion_matrix(np.zeros(3), np.zeros(4), 3)
    with pytest.raises(SarfuseError, match="no labelled pixels"):
        scores(np.zeros((3, 3)))


def test_agrees_with_torchmetrics_on_random_data():
    g = torch.Generator().manual_seed(0)
    k = 5
    target = torch.randint(0, k, (4, 32, 32), generator=g)
    # predictions right 60 % of the time so kappa and IoU are far from 0 and 1
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.6,
        target,
        torch.randint(0, k, target.shape, generator=g),
    )
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    cm = confusion_matrix(pred, target, k)
    tm = dict(num_classes=k, ignore_index=255)
    np.testing.assert_array_equal(cm.numpy(), MulticlassConfusionMatrix(**tm)(pred, target))
    s = scores(cm)
    assert s["OA"] == pytest.approx(MulticlassAccuracy(**tm, average="micro")(pred, target).item())
    assert s["AA"] == pytest.approx(MulticlassAccuracy(**tm, average="macro")(pred, target).item())
    assert s["kappa"] == pytest.approx(MulticlassCohenKappa(**tm)(pred, target).item(), abs=1e-6)
    assert s["mIoU"] == pytest.approx(
        MulticlassJaccardIndex(**tm, average="macro")(pred, target).item(), abs=1e-6
    )


def test_format_table_lists_every_class():
    table = format_table(scores(CM3, ["forest", "water", "urban"]))
    for word in ("OA", "kappa", "mIoU", "forest", "water", "urban", "0.4286"):
        assert word in table
