"""Known-answer tests for pseudo labels, self-training, patch cross-validation and edge masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarfuse.data.schemes import SEN1FLOODS11, ClassDef, ClassScheme, PseudoRule
from sarfuse.errors import SarfuseError
from sarfuse.mapping.metrics import edge_mask
from sarfuse.mapping.probe import fit_forest, fit_linear, softmax_regression_gradients
from sarfuse.mapping.pseudo import balanced_sample, confident_labels, merge, rule_labels
from sarfuse.mapping.selection import (
    Candidate,
    CrossValidation,
    choose,
    cross_validate,
    describe,
    patch_folds,
)
from sarfuse.mapping.selftrain import SelfTrainConfig, self_train

IGN = 255


def test_rule_labels_need_every_available_rule_and_leave_conflicts_unlabelled() -> None:
    # columns: ndwi, mean_sar
    values = np.array([
        [0.5, -25.0],   # water by both rules
        [0.5, -10.0],   # NDWI says water, SAR says land: no class has all its rules
        [-0.3, -10.0],  # land
        [np.nan, -25.0],  # NaN never matches
    ])  # fmt: skip
    got = rule_labels(values, ["ndwi", "mean_sar"], SEN1FLOODS11)
    assert got.tolist() == [1, IGN, 0, IGN]
    # S1 only: only the SAR rules are evaluated
    assert rule_labels(values[:, 1:], ["mean_sar"], SEN1FLOODS11).tolist() == [1, 0, 0, 1]
    # no usable rule at all: nothing labelled
    assert rule_labels(values[:, :1], ["ndvi"], SEN1FLOODS11).tolist() == [IGN] * 4


def test_overlapping_rules_of_two_classes_give_no_label() -> None:
    scheme = ClassScheme("t", (
        ClassDef(1, "a", "#000000", (PseudoRule("ndvi", above=0.2),)),
        ClassDef(2, "b", "#ffffff", (PseudoRule("ndvi", above=0.5),)),
    ))  # fmt: skip
    got = rule_labels(np.array([[0.3], [0.6], [0.1]]), ["ndvi"], scheme)
    assert got.tolist() == [0, IGN, IGN]


def test_scheme_json_round_trips_pseudo_rules_and_rejects_bad_ones() -> None:
    data = SEN1FLOODS11.to_json()
    back = ClassScheme.from_json(data)
    assert back.classes == SEN1FLOODS11.classes
    one = {"classes": [{"value": 1, "name": "W", "color": "#0000ff",
                        "pseudo": {"index": "ndwi", "above": 0.3}}]}  # fmt: skip
    assert ClassScheme.from_json(one).classes[0].pseudo == (PseudoRule("ndwi", above=0.3),)
    with pytest.raises(SarfuseError, match="needs 'above' or 'below'"):
        ClassScheme.from_json({"classes": [{**one["classes"][0], "pseudo": {"index": "ndwi"}}]})


def test_balanced_sample_caps_each_class_and_keeps_the_most_confident() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [IGN] * 5)
    got = balanced_sample(labels, 4, np.random.default_rng(0))
    assert (got == 0).sum() == 4 and (got == 1).sum() == 3 and (got[13:] == IGN).all()
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.99, 0.01], [0.2, 0.8], [0.45, 0.55]])
    got = confident_labels(proba, 1, np.random.default_rng(0))
    assert got.tolist() == [IGN, IGN, 0, 1, IGN]
    got = confident_labels(proba, 5, np.random.default_rng(0), min_confidence=0.7)
    assert got.tolist() == [0, IGN, 0, 1, IGN]


def test_merge_drops_disagreements() -> None:
    rules = np.array([0, 1, IGN, IGN])
    predicted = np.array([0, 0, 1, IGN])
    assert merge(rules, predicted).tolist() == [0, IGN, 1, IGN]


def test_weighted_gradients_equal_autograd_and_duplicate_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=gen), torch.tensor([0, 1, 2, 1, 0, 2, 2])
    w, b = torch.randn(3, 3, generator=gen), torch.randn(3, generator=gen)
    sw = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.25])
    wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
    ce = torch.nn.functional.cross_entropy(x @ wr.T + br, y, reduction="none")
    ((ce * sw).sum() / sw.sum()).backward()
    gw, gb, loss = softmax_regression_gradients(x, y, w, b, sw)
    torch.testing.assert_close(gw, wr.grad)
    torch.testing.assert_close(gb, br.grad)
    torch.testing.assert_close(loss, (ce * sw).sum().detach())
    # weight 2 on a pixel = the pixel given twice
    twice = softmax_regression_gradients(torch.cat([x, x[:1]]), torch.cat([y, y[:1]]), w, b)
    ones = torch.ones(7)
    ones[0] = 2.0
    torch.testing.assert_close(softmax_regression_gradients(x, y, w, b, ones)[0], twice[0])


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen) + 3.0 * y[:, None].float()
    return x, y


def test_self_training_learns_from_pseudo_labels_and_reports_their_accuracy() -> None:
    # labelled: two pixels; pool: separable blobs whose index column (col 1) drives the rules
    x_pool, truth = _blobs(400, 1)
    x_lab, y_lab = x_pool[:2], truth[:2]
    scheme = ClassScheme("t", (
        ClassDef(0, "low", "#000000", (PseudoRule("idx", below=0.0),)),
        ClassDef(1, "high", "#ffffff", (PseudoRule("idx", above=3.0),)),
    ))  # fmt: skip
    rules = rule_labels(x_pool[:, 1:].numpy(), ["idx"], scheme)
    fit = lambda x, y, w: fit_linear(x, y, 2, w, epochs=30, lr=0.1)[0]  # noqa: E731
    cfg = SelfTrainConfig(rounds=3, fraction=0.2, weight=0.5, min_confidence=0.6)
    result = self_train(fit, x_lab, y_lab, x_pool, rules, cfg, seed=0, truth=truth.numpy())
    assert 1 <= len(result.rounds) <= 4
    assert result.rounds[0]["pseudo_labels"] > 0 and result.rounds[0]["accuracy"] > 0.95
    pred = result.classifier.predict_proba(x_pool.T[None, :, :, None])[0, :, :, 0].argmax(0)
    assert (pred == truth).float().mean() > 0.9


def test_patch_folds_keep_patches_whole_and_cover_every_pixel() -> None:
    groups = torch.tensor([3, 3, 5, 5, 5, 8, 9, 9])
    folds = patch_folds(groups, 2, seed=0)
    assert len(folds) == 2
    assert torch.stack(folds).sum(0).tolist() == [1] * 8
    for fold in folds:
        for g in torch.unique(groups):
            assert fold[groups == g].all() or not fold[groups == g].any()


def test_cross_validation_prefers_the_informative_columns() -> None:
    x, y = _blobs(600, 2)
    noise = torch.randn(600, 1, generator=torch.Generator().manual_seed(3))
    x = torch.cat([noise, x], 1)  # column 0: noise, columns 1-2: the signal
    groups = torch.arange(600) // 100
    cands = [Candidate("noise", (0,), "rf"), Candidate("signal", (1, 2), "rf")]
    fit = lambda name, a, b, w: fit_forest(a, b, 2, w, n_estimators=10)  # noqa: E731
    cv = cross_validate(cands, x, y, groups, 2, fit, n_folds=3)
    assert cv.miou["signal/rf"] > 0.8 > cv.miou["noise/rf"]
    assert len(cv.folds["signal/rf"]) == 3 and min(cv.folds["signal/rf"]) > 0.8
    assert choose(cands, cv).features == "signal"
    one = cross_validate(cands, x, y, torch.zeros(600, dtype=torch.int64), 2, fit)
    assert choose(cands, one) == cands[0] and one.folds == {}  # one patch: the first candidate


def test_choice_needs_the_margin_and_most_folds() -> None:
    """The reference (first) stays unless another beats it by more than the margin, and on
    more than half of the folds: a lead that comes from one fold where the reference failed is
    not enough."""
    cands = [Candidate("raw", (0,), "rf"), Candidate("other", (1,), "rf")]

    def cv(ref: float, other: float, ref_folds: list, other_folds: list) -> CrossValidation:
        return CrossValidation({"raw/rf": ref, "other/rf": other},
                               {"raw/rf": ref_folds, "other/rf": other_folds})  # fmt: skip

    steady = [0.8, 0.8, 0.8, 0.8]
    assert choose(cands, cv(0.80, 0.81, steady, [0.81] * 4), margin=0.02) == cands[0]
    assert choose(cands, cv(0.80, 0.83, steady, [0.83] * 4), margin=0.02) == cands[1]
    one_fold = cv(0.55, 0.84, [0.25, 0.84, 0.66, 0.75], [0.74, 0.86, 0.62, 0.74])
    assert choose(cands, one_fold, margin=0.02) == cands[0]  # wins 2 of 4 folds: not most
    assert choose(cands, one_fold, margin=0.02, most_folds=False) == cands[1]
    three = cv(0.55, 0.84, [0.25, 0.84, 0.66, 0.75], [0.74, 0.86, 0.67, 0.74])
    assert choose(cands, three, margin=0.02) == cands[1]  # 3 of 4
    assert choose(cands, cv(0.80, 0.90, [0.8, 0.8], [0.9, 0.8])) == cands[0]  # 1 of 2: a tie


def test_edge_mask_marks_pixels_near_another_class_only() -> None:
    lab = np.zeros((6, 8), dtype=np.int64)
    lab[:, 4:] = 1
    lab[0, 0] = IGN
    got = edge_mask(lab, width=1)
    assert got[:, 3:5].all() and not got[:, :3].any() and not got[:, 5:].any()
    assert edge_mask(np.full((4, 4), 2), width=2).sum() == 0
    ign = np.full((3, 3), IGN)
    ign[1, 1] = 0
    assert edge_mask(ign, width=1).sum() == 0  # ignore never makes an edge


def test_describe_says_what_auto_chose_and_the_fold_wins() -> None:
    sel = {
        "cv_miou": {"raw/rf": 0.55, "raw/linear": 0.84, "pretrained/rf": float("nan")},
        "cv_fold_miou": {"raw/rf": [0.25, 0.84], "raw/linear": [0.74, 0.83],
                         "pretrained/rf": [0.1, 0.2]},  # fmt: skip
        "chosen": "raw/rf", "margin": 0.02, "most_folds": True,
    }  # fmt: skip
    lines = describe(sel).splitlines()
    assert lines[0].startswith("features/classifier: raw/rf, chosen by cross-validation")
    assert "by 0.02 mIoU and on most folds" in lines[0]
    assert lines[1].split()[:4] == ["raw/linear", "CV", "mIoU", "0.8400"]  # best CV first
    assert lines[1].endswith("beats raw/rf on 1 of 2 folds")
    assert lines[2].lstrip().startswith("* raw/rf") and "beats" not in lines[2]
    assert "nan" in lines[3]  # a candidate without a score is listed last
    assert describe({"chosen": "raw/rf"}) == "features/classifier: raw/rf"
