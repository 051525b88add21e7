"""The random forest as arrays: the NumPy walk against scikit-learn, and damaged arrays refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from sarfuse.mapping.forest import LEAF, ForestArrays


def _fitted(seed: int = 0, **options) -> tuple[RandomForestClassifier, np.ndarray]:
    """A forest on noisy labels of classes 1, 2, 4 (deep trees, gaps in the labels), and query
    pixels at random, from training, and on the first tree's thresholds rounded to float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    noisy = (x[:, 0] + 0.7 * x[:, 1] + rng.normal(size=600) > 0).astype(int)
    y = np.array([1, 2, 4])[noisy + (x[:, 2] > 1)]
    forest = RandomForestClassifier(random_state=seed, **options).fit(x, y)
    tree = forest.estimators_[0].tree_
    inner = np.flatnonzero(tree.children_left != LEAF)
    edges = np.repeat(x[:1], len(inner), axis=0)
    edges[np.arange(len(inner)), tree.feature[inner]] = tree.threshold[inner]  # float32 casts
    queries = np.concatenate([rng.normal(size=(400, 5)).astype(np.float32) * 2, x[:100], edges])
    return forest, queries


@pytest.mark.parametrize(
    "options",
    [
        {"n_estimators": 12},
        {"n_estimators": 5, "max_depth": 3},
        {"n_estimators": 7, "bootstrap": False},
    ],
)
@pytest.mark.parametrize("walk", ["compiled", "numpy"])
def test_the_walk_matches_scikit_learn(options, walk):
    """Both walks: scikit-learn's compiled trees rebuilt from the arrays, and the NumPy
    fallback used where they cannot be rebuilt."""
    forest, queries = _fitted(**options)
    arrays = ForestArrays.from_sklearn(forest)
    assert arrays.classes.tolist() == [1, 2, 4]
    if walk == "numpy":
        arrays.__dict__["compiled"] = None  # as when scikit-learn's tree layout has changed
    else:
        assert len(arrays.compiled) == len(forest.estimators_)
    np.testing.assert_allclose(
        arrays.predict_proba(queries), forest.predict_proba(queries), atol=1e-6
    )


def test_a_tree_that_is_a_single_leaf():
    """Bootstrap samples of a one-class problem: every tree is its root."""
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.full(20, 2))
    arrays = ForestArrays.from_sklearn(forest)
    assert (arrays.left == LEAF).all()
    np.testing.assert_allclose(arrays.predict_proba(x), forest.predict_proba(x), atol=1e-6)


def test_the_state_round_trips_and_is_only_tensors():
    forest, queries = _fitted(n_estimators=4)
    arrays = ForestArrays.from_sklearn(forest)
    state = arrays.to_state()
    assert all(type(v).__name__ == "Tensor" for v in state.values())
    again = ForestArrays.from_state(state, in_channels=5)
    np.testing.assert_array_equal(again.predict_proba(queries), arrays.predict_proba(queries))


def _damaged(change) -> dict:
    state = ForestArrays.from_sklearn(_fitted(n_estimators=3)[0]).to_state()
    change(state)
    return state


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("threshold"), "needs the tensors"),
        (lambda s: s["left"].__setitem__(0, 0), "do not form trees"),  # a loop at the root
        (lambda s: s["right"].__setitem__(0, 10**9), "do not form trees"),
        (lambda s: s["left"].__setitem__(0, int(s["roots"][1]) + 1), "do not form trees"),
        (lambda s: s["feature"].__setitem__(0, 5), "outside 0..4"),
        (lambda s: s.__setitem__("proba", s["proba"][:, :2]), "inconsistent shapes"),
        (lambda s: s.__setitem__("roots", s["roots"][[1, 0, 2]]), "inconsistent shapes"),
    ],
)
def test_arrays_that_are_not_trees_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        ForestArrays.from_state(_damaged(change), in_channels=5)


def test_the_rebuilt_trees_have_scikit_learns_depths():
    forest, _ = _fitted(n_estimators=6)
    arrays = ForestArrays.from_sklearn(forest)
    depths = [tree.max_depth for tree in arrays.compiled]
    assert depths == [est.tree_.max_depth for est in forest.estimators_]
