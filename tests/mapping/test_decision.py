"""Known answers for the expected-IoU decision (mapping/decision.py)."""

import pytest
import torch

from sarfuse.mapping.decision import (
    confusion_iou,
    decide,
    describe,
    expected_confusion,
    expected_iou,
    iou_offsets,
)
from sarfuse.mapping.probe import predict_pixels
from sarfuse.mapping.selection import Candidate, check_decision


def _binary(p1: list[float]) -> torch.Tensor:
    p = torch.tensor(p1, dtype=torch.float64)
    return torch.stack([1 - p, p], 1)


def test_expected_confusion_sums_probabilities_per_predicted_class():
    proba = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    cm = expected_confusion(proba, torch.tensor([0, 1, 0]))
    # column 0 holds pixels 0 and 2, column 1 pixel 1; rows are the expected true classes
    assert torch.allclose(cm, torch.tensor([[1.5, 0.3], [0.5, 0.7]]))


def test_expected_iou_by_hand():
    # 10 pixels sure of class 1, 10 at p1 = 0.45, 80 sure of class 0
    proba = _binary([0.9] * 10 + [0.45] * 10 + [0.0] * 80)
    argmax = proba.argmax(1)
    # class 1 predicted on the first 10: E[inter] = 9, E[pred] = 10, E[true] = 9 + 4.5
    assert abs(expected_iou(proba, argmax, target=1) - 9 / (10 + 13.5 - 9)) < 1e-9
    inter0, true0 = 5.5 + 80, 1 + 5.5 + 80
    iou0 = inter0 / (true0 + 90 - inter0)
    assert abs(expected_iou(proba, argmax) - (iou0 + 9 / 14.5) / 2) < 1e-9


def test_offsets_take_the_uncertain_pixels_when_that_raises_the_mean_iou():
    proba = _binary([0.9] * 10 + [0.45] * 10 + [0.0] * 80)
    offsets = iou_offsets(proba)
    pred = decide(proba, offsets)
    assert (pred[:20] == 1).all() and (pred[20:] == 0).all()
    # mean expected IoU 0.780 -> 0.800 (class 1: 0.621 -> 0.675; class 0: 0.940 -> 0.925)
    assert abs(expected_iou(proba, pred) - (13.5 / 20 + 80 / 86.5) / 2) < 1e-6


def test_binary_offset_is_the_best_threshold():
    gen = torch.Generator().manual_seed(0)
    p1 = torch.rand(200, generator=gen, dtype=torch.float64) ** 2
    proba = torch.stack([1 - p1, p1], 1)
    got = expected_iou(proba, decide(proba, iou_offsets(proba)))
    brute = max(expected_iou(proba, (p1 >= t).long()) for t in p1.tolist())
    assert abs(got - brute) < 1e-9
    assert got > expected_iou(proba, proba.argmax(1))


def test_target_class_iou_is_raised_for_that_class():
    proba = _binary([0.9] * 10 + [0.45] * 10 + [0.3] * 10 + [0.0] * 70)
    offsets = iou_offsets(proba, target=1)
    score = expected_iou(proba, decide(proba, offsets), target=1)
    assert score >= expected_iou(proba, proba.argmax(1), target=1)
    # E[true] = 16.5: predicting 10 gives 9 / 17.5, 20 gives 13.5 / 23, 30 gives 16.5 / 30
    assert abs(score - 13.5 / 23) < 1e-6


def test_confident_or_empty_input_keeps_the_argmax():
    onehot = torch.eye(3)[torch.tensor([0, 1, 2, 2, 1])]
    assert torch.equal(iou_offsets(onehot), torch.zeros(3))
    assert torch.equal(iou_offsets(torch.zeros(0, 4)), torch.zeros(4))


def test_three_classes_never_lower_the_expected_miou():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 3, generator=gen) + torch.tensor([2.0, 0.0, -1.0])
    proba = logits.softmax(1)
    offsets = iou_offsets(proba)
    assert expected_iou(proba, decide(proba, offsets)) > expected_iou(proba, proba.argmax(1))
    assert offsets.abs().max() <= 3.0 + 1e-6


def test_describe_names_the_rule_and_what_it_expects() -> None:
    note = {"rule": "iou", "target": "Water", "offsets": [0.0, 0.4], "pixels": 900,
            "expected_iou_argmax": 0.71, "expected_iou": 0.742}  # fmt: skip
    line = describe(note)
    assert "Water IoU" in line and "0.710 -> 0.742" in line and "900" in line
    assert describe({"rule": "argmax", "target": "mean IoU"}) == "decision: most probable class"
    fallback = {"rule": "argmax", "target": "Water", "reason": "no unlabelled patches"}
    assert describe(fallback).endswith("(no unlabelled patches)")


class _Sigmoid:
    """A fixed two-class classifier: P(class 1) = sigmoid(4 x) of the first feature."""

    kind, in_channels, num_classes = "linear", 1, 2

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        p1 = torch.sigmoid(4 * features[:, :1])
        return torch.cat([1 - p1, p1], 1)


@pytest.mark.parametrize(("truth_above", "helps"), [(0.3, True), (0.9, False)])
def test_check_decision_scores_the_offsets_on_held_out_patches(truth_above, helps) -> None:
    """The offsets favour class 1 (the IoU-best threshold of calibrated probabilities lies below
    0.5); on labelled patches whose class 1 reaches below that threshold they raise its IoU, on
    patches whose class 1 is rarer than the arg-max predicts they lower it."""
    pool = torch.linspace(-1.5, 1.5, 3001)[:, None]
    assert iou_offsets(predict_pixels(_Sigmoid(), pool), 1)[1] > 0
    x = torch.linspace(-1.5, 1.5, 400)[:, None]
    y = (torch.sigmoid(4 * x[:, 0]) > truth_above).long()
    groups = torch.arange(400) % 4
    cand = Candidate("raw", (0,), "linear")
    fit = lambda *_: _Sigmoid()  # noqa: E731
    plain, moved = check_decision(cand, x, y, groups, pool, 2, 1, fit, n_folds=4)
    assert int(plain.sum()) == int(moved.sum()) == 400
    assert (confusion_iou(moved, 1) > confusion_iou(plain, 1)) == helps
    assert check_decision(cand, x, y, torch.zeros(400), pool, 2, 1, fit) is None  # one patch


def test_confusion_iou_known_answer() -> None:
    cm = torch.tensor([[5, 1], [2, 2]])  # rows = truth
    assert confusion_iou(cm, 1) == pytest.approx(2 / 5)
    assert confusion_iou(cm, 0) == pytest.approx(5 / 8)
    assert confusion_iou(cm) == pytest.approx((2 / 5 + 5 / 8) / 2)
