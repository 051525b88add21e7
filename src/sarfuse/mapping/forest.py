"""A fitted random forest as plain arrays, and a pure-NumPy predictor that walks them.

A saved probe must load without unpickling (a pickle can run any code), so the scikit-learn
trees are kept as their node arrays only: children, tested feature, threshold and the class
fractions at each node. Prediction follows scikit-learn's own rules (go left when
``x[feature] <= threshold`` with ``x`` as float32, average the trees' leaf fractions), so it
matches ``RandomForestClassifier.predict_proba`` to rounding.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier

LEAF = -1  # scikit-learn's TREE_LEAF: the child index of a leaf


@dataclass(frozen=True)
class ForestArrays:
    """Every tree's nodes one after another (N nodes in all, T trees, K' classes seen)."""

    roots: np.ndarray  # (T,) int64: each tree's first node
    left: np.ndarray  # (N,) int64: left child (index into all nodes), LEAF at a leaf
    right: np.ndarray  # (N,) int64: right child, LEAF at a leaf
    feature: np.ndarray  # (N,) int64: feature tested at the node (unused at a leaf)
    threshold: np.ndarray  # (N,) float64: go left when x[feature] <= threshold
    proba: np.ndarray  # (N, K') float64: class fractions at the node, as the tree predicts them
    classes: np.ndarray  # (K',) int64: the class label of each column

    @classmethod
    def from_sklearn(cls, forest: RandomForestClassifier) -> ForestArrays:
        trees = [est.tree_ for est in forest.estimators_]
        sizes = np.array([t.node_count for t in trees], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def children(side: str) -> np.ndarray:
            parts = [getattr(t, side).astype(np.int64) for t in trees]
            return np.concatenate(
                [np.where(c == LEAF, LEAF, c + s) for c, s in zip(parts, starts, strict=True)]
            )

        value = np.concatenate([t.value[:, 0, :] for t in trees]).astype(np.float64)  # (N, K')
        total = value.sum(1, keepdims=True)
        total[total == 0.0] = 1.0  # as DecisionTreeClassifier.predict_proba
        return cls(
            roots=starts,
            left=children("children_left"),
            right=children("children_right"),
            feature=np.concatenate([t.feature for t in trees]).astype(np.int64),
            threshold=np.concatenate([t.threshold for t in trees]).astype(np.float64),
            proba=value / total,
            classes=np.asarray(forest.classes_).astype(np.int64),
        )

    def to_state(self) -> dict[str, torch.Tensor]:
        """Tensors only: ``torch.load(weights_only=True)`` reads them back."""
        return {f.name: torch.from_numpy(getattr(self, f.name).copy()) for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], in_channels: int) -> ForestArrays:
        """Rebuild from :meth:`to_state`; raises ``ValueError`` when the arrays do not form
        trees over ``in_channels`` features (a damaged or hand-made file)."""
        if not isinstance(state, dict) or not all(
            isinstance(state.get(f.name), torch.Tensor) for f in fields(cls)
        ):
            raise ValueError(f"a forest needs the tensors {[f.name for f in fields(cls)]}")
        arrays = {f.name: state[f.name].numpy() for f in fields(cls)}
        ints = ("roots", "left", "right", "feature", "classes")
        forest = cls(
            **{k: v.astype(np.int64 if k in ints else np.float64) for k, v in arrays.items()}
        )
        forest.check(in_channels)
        return forest

    def check(self, in_channels: int) -> None:
        """Each tree's children come after their parent and before the next tree (so every walk
        ends at a leaf), and every tested feature exists."""
        n = len(self.left)
        if not (
            self.roots.ndim == 1
            and len(self.roots) > 0
            and self.roots[0] == 0
            and (np.diff(self.roots) > 0).all()
            and self.roots[-1] < n
            and all(a.shape == (n,) for a in (self.right, self.feature, self.threshold))
            and self.proba.shape == (n, len(self.classes))
            and self.classes.ndim == 1
        ):
            raise ValueError("forest arrays of inconsistent shapes")
        tree_end = np.append(self.roots[1:], n)[
            np.searchsorted(self.roots, np.arange(n), "right") - 1
        ]
        inner = self.left != LEAF
        node = np.arange(n)[inner]
        for child in (self.left[inner], self.right[inner]):
            if not ((child > node) & (child < tree_end[inner])).all():
                raise ValueError("forest arrays do not form trees")
        if not ((self.feature[inner] >= 0) & (self.feature[inner] < in_channels)).all():
            raise ValueError(f"a tree tests a feature outside 0..{in_channels - 1}")

    def leaves(self, x: np.ndarray, root: int) -> np.ndarray:
        """The leaf each pixel of ``x`` (P, C) float32 reaches in the tree at ``root``: (P,)."""
        node = np.full(len(x), root, dtype=np.int64)
        todo = np.arange(len(x)) if self.left[root] != LEAF else np.arange(0)
        while todo.size:  # only the pixels not yet at a leaf move on
            at = node[todo]
            go_left = x[todo, self.feature[at]] <= self.threshold[at]
            nxt = np.where(go_left, self.left[at], self.right[at])
            node[todo] = nxt
            todo = todo[self.left[nxt] != LEAF]
        return node

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(P, C)`` features -> ``(P, K')`` class probabilities, the mean over the trees.

        Walked by scikit-learn's compiled trees rebuilt from these arrays (about 6x faster than
        the NumPy walk, which stays as the fallback should scikit-learn's tree layout change).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)  # scikit-learn predicts on float32
        if self.compiled is not None:
            return _mean_over_trees(self.compiled, x, len(self.classes))
        out = np.zeros((len(x), len(self.classes)), dtype=np.float64)
        for root in self.roots:
            out += self.proba[self.leaves(x, int(root))]
        return out / len(self.roots)

    @cached_property
    def compiled(self) -> list | None:
        """The trees as scikit-learn ``Tree`` objects, filled from the checked arrays (no
        pickle is involved); None where this scikit-learn builds them differently."""
        ends = np.append(self.roots[1:], len(self.left))
        try:
            return [
                self._sklearn_tree(int(a), int(b)) for a, b in zip(self.roots, ends, strict=True)
            ]
        except (ImportError, AttributeError, KeyError, TypeError, ValueError):
            return None

    def _sklearn_tree(self, start: int, end: int):
        from sklearn.tree._tree import NODE_DTYPE, TREE_UNDEFINED, Tree

        leaf = self.left[start:end] == LEAF
        nodes = np.zeros(end - start, dtype=NODE_DTYPE)
        nodes["left_child"] = np.where(leaf, LEAF, self.left[start:end] - start)
        nodes["right_child"] = np.where(leaf, LEAF, self.right[start:end] - start)
        nodes["feature"] = np.where(leaf, TREE_UNDEFINED, self.feature[start:end])
        nodes["threshold"] = np.where(leaf, TREE_UNDEFINED, self.threshold[start:end])
        n_features = int(self.feature.max(initial=0)) + 1
        tree = Tree(n_features, np.array([len(self.classes)], dtype=np.intp), 1)
        state = {
            "max_depth": _depth(nodes["left_child"], nodes["right_child"]),
            "node_count": end - start,
            "nodes": nodes,
            "values": np.ascontiguousarray(self.proba[start:end, None, :]),
        }
        tree.__setstate__(state)
        return tree


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Depth of a tree (root 0), level by level: one NumPy step per level, not per node."""
    level, depth = np.zeros(1, dtype=np.int64), 0
    while True:
        inner = level[left[level] != LEAF]
        if inner.size == 0:
            return depth
        level, depth = np.concatenate([left[inner], right[inner]]), depth + 1


def _mean_over_trees(trees: list, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean of the trees' leaf fractions for ``x`` (P, C) float32; trees run on threads (the
    compiled walk releases the GIL)."""
    workers = min(len(trees), max(1, torch.get_num_threads()))
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda t: t.predict(x).reshape(len(x), num_classes), trees)
        return sum(parts) / len(trees)
