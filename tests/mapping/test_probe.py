"""Linear probe and random forest on synthetic per-pixel problems; save/load round trips."""

from __future__ import annotations

import pickle
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_args

import pytest
import torch

from sarfuse.errors import SarfuseError
from sarfuse.mapping.probe import (
    AUTO_CLASSIFIERS,
    CLASSIFIERS,
    ClassifierName,
    ForestOptions,
    LinearOptions,
    LinearProbe,
    OffsetClassifier,
    classifier_options,
    labelled_pixels,
    load_classifier,
    predict_proba,
    save_classifier,
    softmax_regression_gradients,
    train_classifier,
    train_linear_probe,
    train_random_forest,
    with_offsets,
)
from sarfuse.mapping.workflow import ClassifierChoice, ProbeConfig

K = 3


def _problem(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, 4, 8, 8) on very different scales; labels: argmax of a linear map, margin."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, 8, 8, generator=g)
    w = torch.tensor([[2.0, -1.0, 0.5, 0.0], [-1.0, 2.0, 0.0, 1.0], [0.0, 0.0, -1.5, -1.0]])
    scores = torch.einsum("kc,nchw->nkhw", w, z)
    top2 = scores.topk(2, dim=1).values
    labels = scores.argmax(1)
    labels[(top2[:, 0] - top2[:, 1]) < 0.3] = 255  # drop pixels too close to a boundary
    scale = torch.tensor([1000.0, 0.01, 1.0, 50.0])[None, :, None, None]
    shift = torch.tensor([3000.0, -5.0, 0.0, 20.0])[None, :, None, None]
    return z * scale + shift, labels


def _accuracy(proba: torch.Tensor, labels: torch.Tensor) -> float:
    keep = labels != 255
    return (proba.argmax(1)[keep] == labels[keep]).float().mean().item()


def test_linear_probe_learns_separable_problem_in_a_few_epochs():
    x, y = _problem()
    probe, history = train_linear_probe(x, y, K, epochs=5, batch_size=4)
    assert len(history) == 5 and history[-1] < history[0]
    xt, yt = _problem(seed=1)
    proba = predict_proba(probe, xt)
    assert proba.shape == (32, K, 8, 8)
    torch.testing.assert_close(proba.sum(1), torch.ones(32, 8, 8))
    assert _accuracy(proba, yt) > 0.95


def test_closed_form_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, K, (50,), generator=g)
    w = torch.randn(K, 6, generator=g, requires_grad=True)
    b = torch.randn(K, generator=g, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, y)
    loss.backward()
    gw, gb, loss_sum = softmax_regression_gradients(x, y, w.detach(), b.detach())
    torch.testing.assert_close(gw, w.grad)
    torch.testing.assert_close(gb, b.grad)
    torch.testing.assert_close(loss_sum / 50, loss.detach())


def test_training_equals_torch_sgd_on_the_same_batches():
    """The probe's update rule is torch.optim.SGD(lr, momentum) on cross-entropy, step for step."""
    x, y = _problem(n=6)
    probe, history = train_linear_probe(x, y, K, epochs=3, lr=0.05, batch_size=2, seed=4)
    px, py, _ = labelled_pixels(x, y)
    px = (px - probe.mean) / probe.std
    ref = torch.nn.Linear(px.shape[1], K)
    torch.nn.init.zeros_(ref.weight), torch.nn.init.zeros_(ref.bias)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    gen, losses = torch.Generator().manual_seed(4), []
    for _ in range(3):
        total = 0.0
        for idx in torch.randperm(len(py), generator=gen).chunk(3):  # ceil(6 patches / 2) steps
            loss = torch.nn.functional.cross_entropy(ref(px[idx]), py[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(py))
    torch.testing.assert_close(probe.conv.weight.flatten(1), ref.weight.detach())
    torch.testing.assert_close(probe.conv.bias, ref.bias.detach())
    assert history == pytest.approx(losses, rel=1e-5)


def test_ignored_pixels_do_not_contribute():
    x, y = _problem(n=4)
    sparse = torch.full_like(y, 255)
    keep = torch.zeros_like(y, dtype=torch.bool)
    keep[:, ::3, ::3] = True
    sparse[keep] = y[keep]
    other = x.clone()
    other[~keep.unsqueeze(1).expand_as(x)] = 1e6  # garbage where unlabelled: must not matter
    a, _ = train_linear_probe(x, sparse, K, epochs=3)
    b, _ = train_linear_probe(other, sparse, K, epochs=3)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key])
    assert a.mean[0] == pytest.approx(x.permute(0, 2, 3, 1)[keep & (y != 255)][:, 0].mean())


def test_batches_stream_matches_tensor():
    x, y = _problem(n=8)
    a, ha = train_linear_probe(x, y, K, epochs=2, batch_size=2)
    b, hb = train_linear_probe(
        lambda: [(x[:4], y[:4]), (x[4:], y[4:])], None, K, epochs=2, batch_size=2
    )
    assert ha == pytest.approx(hb)
    torch.testing.assert_close(a.conv.weight, b.conv.weight)


def test_labelled_pixels_subsample_is_bounded_and_from_labelled_pixels():
    x, y = _problem(n=8)
    px, py, n = labelled_pixels(x, y, max_pixels=50, seed=0)
    assert px.shape == (50, 4) and n == 8 and (py != 255).all()
    full, _, _ = labelled_pixels(x, y)
    assert all((full == row).all(1).any() for row in px)


def test_random_forest_learns_and_fills_unseen_class_columns():
    x, y = _problem()
    rf = train_random_forest(x, y, num_classes=K + 1, n_estimators=20, max_pixels=1000)
    proba = predict_proba(rf, _problem(seed=1)[0])
    assert proba.shape == (32, K + 1, 8, 8)
    assert (proba[:, K] == 0).all()  # class 3 never seen in training
    torch.testing.assert_close(proba.sum(1), torch.ones(32, 8, 8))
    assert _accuracy(proba, _problem(seed=1)[1]) > 0.9


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_save_load_round_trip(tmp_path, name):
    x, y = _problem(n=8)
    options = {"epochs": 2} if name == "linear" else {"n_estimators": 5}
    clf, _ = train_classifier(name, x, y, K, **options)
    path = save_classifier(tmp_path / "probe.pt", clf, {"features": "raw", "bands": ["VV", "VH"]})
    loaded, meta = load_classifier(path)
    assert meta == {"features": "raw", "bands": ["VV", "VH"]}
    assert loaded.kind == name and loaded.num_classes == K
    torch.testing.assert_close(predict_proba(loaded, x), predict_proba(clf, x), rtol=0, atol=0)


def test_errors():
    x, y = _problem(n=2)
    with pytest.raises(SarfuseError, match="unknown classifier"):
        train_classifier("svm", x, y, K)  # type: ignore[arg-type]
    with pytest.raises(SarfuseError, match="no labelled pixels"):
        train_linear_probe(x, torch.full_like(y, 255), K)
    with pytest.raises(SarfuseError, match="outside 0..1"):
        train_linear_probe(x, y, 2)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    y2 = y.clone()
    y2[0, 0, 0] = 0
    with pytest.raises(SarfuseError, match="NaN"):
        train_linear_probe(bad, y2, K)
    with pytest.raises(SarfuseError, match="expects 4 feature channels"):
        predict_proba(LinearProbe(4, K), x[:, :2])


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SarfuseError, match="junk.pt: not a sarfuse classifier"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(SarfuseError, match="other.pt: not a sarfuse classifier"):
        load_classifier(tmp_path / "other.pt")


def _rf_file(tmp_path, state) -> Path:
    """A random-forest probe file with ``state`` in place of the forest's arrays."""
    x, y = _problem(n=4)
    clf, _ = train_classifier("rf", x, y, K, n_estimators=2)
    path = save_classifier(tmp_path / "probe.pt", clf)
    record = torch.load(path, weights_only=True)
    record["state"] = state(record["state"])
    torch.save(record, path)
    return path


def test_a_forest_is_saved_as_tensors_only(tmp_path):
    path = _rf_file(tmp_path, lambda state: state)
    state = torch.load(path, weights_only=True)["state"]
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_a_pickled_forest_of_an_older_sarfuse_is_refused_unread(tmp_path, payload):
    path = _rf_file(tmp_path, lambda _: pickle.dumps(payload))
    with pytest.raises(SarfuseError, match="older sarfuse as a pickle.*retrain the probe") as err:
        load_classifier(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert not payload.marker.exists()


def test_a_probe_file_holding_an_object_is_refused_unread(tmp_path, payload):
    path = _rf_file(tmp_path, lambda state: {**state, "extra": payload})
    with pytest.raises(SarfuseError, match="refused: it holds a Python object") as err:
        load_classifier(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert not payload.marker.exists()


def test_a_damaged_forest_is_a_one_line_error(tmp_path):
    def loop(state):
        state["left"][0] = 0  # the root is its own child: a walk would never end
        return state

    with pytest.raises(SarfuseError, match="probe.pt: damaged classifier file.*do not form trees"):
        load_classifier(_rf_file(tmp_path, loop))


@pytest.mark.parametrize("name", ["linear", "rf"])
def test_decision_offsets_move_the_probabilities_and_are_saved(tmp_path, name):
    """A linear probe takes the offsets into its bias (still one conv, still exportable), a
    forest is wrapped; both give p e^b renormalised, and a saved probe decides the same."""
    x, y = _problem(n=8)
    options = {"epochs": 2} if name == "linear" else {"n_estimators": 5}
    clf, _ = train_classifier(name, x, y, K, **options)
    before = predict_proba(clf, x)
    b = torch.tensor([0.0, 1.0, -0.5])
    moved = with_offsets(clf, b)
    assert isinstance(moved, LinearProbe if name == "linear" else OffsetClassifier)
    want = before * b.exp()[None, :, None, None]
    want = want / want.sum(1, keepdim=True)
    torch.testing.assert_close(predict_proba(moved, x), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(predict_proba(clf, x), before, rtol=0, atol=0)  # clf untouched
    loaded, _ = load_classifier(save_classifier(tmp_path / "probe.pt", moved))
    assert type(loaded) is type(moved) and loaded.kind == name
    torch.testing.assert_close(predict_proba(loaded, x), predict_proba(moved, x), rtol=0, atol=0)
    assert with_offsets(clf, torch.zeros(K)) is clf


@pytest.mark.parametrize(
    ("offsets", "problem"),
    [
        (torch.zeros(2), "decision offsets must be 3 numbers"),
        ("1,2,3", "decision offsets must be 3 numbers"),
        (torch.tensor([0.0, float("nan"), 0.0]), "decision offsets are not finite"),
    ],
)
def test_damaged_decision_offsets_are_a_one_line_error(tmp_path, offsets, problem):
    path = _rf_file(tmp_path, lambda state: state)
    record = torch.load(path, weights_only=True)
    record["offsets"] = offsets
    torch.save(record, path)
    with pytest.raises(SarfuseError, match=f"probe.pt: damaged classifier file .{problem}"):
        load_classifier(path)


def test_classifier_names_are_the_registry() -> None:
    """ClassifierName, auto's candidates and every entry's options come from CLASSIFIERS."""
    assert set(get_args(ClassifierName)) == set(CLASSIFIERS)
    assert set(get_args(ClassifierChoice)) == {"auto", *CLASSIFIERS}
    assert AUTO_CLASSIFIERS == ("rf", "linear")  # raw bands + forest: the reference, first
    for name, kind in CLASSIFIERS.items():
        assert is_dataclass(kind.options) and kind.loss and kind.title
        for option in fields(kind.options):  # a probe config carries each option, same default
            assert getattr(ProbeConfig(), option.name) == option.default, (name, option.name)


def test_classifier_options_read_the_probe_config() -> None:
    cfg = ProbeConfig(epochs=3, lr=0.5, n_trees=7)
    assert classifier_options("linear", cfg) == LinearOptions(3, 0.5, 0.9, 1)
    assert classifier_options("rf", cfg) == ForestOptions(7)
    with pytest.raises(SarfuseError, match="unknown classifier 'svm'"):
        classifier_options("svm", cfg)


def test_folded_standardisation_gives_the_probes_own_probabilities():
    """predict_proba folds mean/std into the 1x1 convolution: same softmax as forward."""
    torch.manual_seed(0)
    probe = LinearProbe(5, 3)
    probe.conv.weight.data.normal_()
    probe.conv.bias.data.normal_()
    probe.mean.copy_(torch.randn(5) * 10)
    probe.std.copy_(torch.rand(5) + 0.1)
    x = torch.randn(2, 5, 4, 6) * 10 + 3
    expected = probe(x).softmax(1)
    torch.testing.assert_close(probe.predict_proba(x), expected, rtol=1e-5, atol=1e-6)
    layout = x.contiguous(memory_format=torch.channels_last)  # as a mapping network answers
    torch.testing.assert_close(probe.predict_proba(layout), expected, rtol=1e-5, atol=1e-6)
