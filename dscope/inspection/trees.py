"""Gradient-boosted decision trees kept as data, evaluated with NumPy (defect classifier).

A :class:`TreeEnsemble` is a multi-class additive model: the score of class
``k`` is ``init[k]`` plus the leaf values of every tree that votes for ``k``
(values already multiplied by the learning rate); the predicted class is the
highest score.  Each tree is stored as flat node arrays (``feature``,
``threshold``, ``left``, ``right``, ``value``; a leaf has ``left == -1``) and a
sample goes left when ``x[feature] <= threshold``.  Feature values are rounded
to float32 before the comparison, as the trainer (scikit-learn) does, so a
stored model reproduces its trainer's decisions exactly.

The trees of a model are concatenated into flat node tables and walked
together, one vectorised step per tree level: no Python loop over trees or
nodes.

The model files live in ``config/models/`` and are written by
``benchmarks/train_classifier.py --model trees``; inference needs NumPy only.

Examples
--------
One stump per class on a single feature: class "a" when ``x0 <= 0.5``.

>>> m = TreeEnsemble.model_validate(dict(
...     features=["x0"], classes=["a", "b"], init=[0.0, 0.0],
...     trees=[dict(cls=0, feature=[0, -1, -1], threshold=[0.5, 0, 0], left=[1, -1, -1],
...                 right=[2, -1, -1], value=[0.0, 1.0, -1.0])]))
>>> m.predict([0.2]), m.predict([0.9])
('a', 'b')
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field, model_validator

from dscope.params import StrictModel


class Tree(StrictModel):
    """One regression tree voting for class ``cls`` (flat node arrays, node 0 = root)."""

    cls: int = Field(ge=0, description="index of the class whose score this tree adds to")
    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    value: list[float]

    @model_validator(mode="after")
    def _consistent(self):
        n = len(self.feature)
        if n == 0 or not (len(self.threshold) == len(self.left) == len(self.right) == len(self.value) == n):
            raise ValueError("tree node arrays must be non-empty and of equal length")
        for i, (lo, hi) in enumerate(zip(self.left, self.right)):
            if (lo == -1) != (hi == -1):
                raise ValueError(f"node {i}: a node has two children or none")
            if lo != -1 and not (i < lo < n and i < hi < n):
                raise ValueError(f"node {i}: children must come after their parent and inside the tree")
        return self


class TreeEnsemble(StrictModel):
    """Boosted trees over named features (see the module docstring)."""

    features: list[str] = Field(min_length=1)
    classes: list[str] = Field(min_length=2)
    init: list[float] = Field(description="initial score of every class")
    trees: list[Tree] = Field(min_length=1)
    trained_on: str = ""

    @model_validator(mode="after")
    def _shapes(self):
        nf, nc = len(self.features), len(self.classes)
        if len(self.init) != nc:
            raise ValueError("init needs one value per class")
        for t, tree in enumerate(self.trees):
            if tree.cls >= nc:
                raise ValueError(f"tree {t}: class index {tree.cls} out of range")
            if any(f >= nf or (f < 0 and lo != -1) for f, lo in zip(tree.feature, tree.left)):
                raise ValueError(f"tree {t}: split on an unknown feature")
        return self

    @cached_property
    def _tables(self):
        """Flat node tables over all trees (global node ids; leaves loop onto themselves)."""
        sizes = [len(t.feature) for t in self.trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        feat, thr, left, right, val = [], [], [], [], []
        for off, t in zip(offsets, self.trees):  # once per model load, not per sample
            idx = np.arange(len(t.feature)) + off
            inner = np.asarray(t.left) != -1
            feat.append(np.where(inner, t.feature, 0))
            thr.append(np.asarray(t.threshold, np.float64))
            left.append(np.where(inner, np.asarray(t.left) + off, idx))
            right.append(np.where(inner, np.asarray(t.right) + off, idx))
            val.append(np.asarray(t.value, np.float64))
        onehot = np.zeros((len(self.trees), len(self.classes)))
        onehot[np.arange(len(self.trees)), [t.cls for t in self.trees]] = 1.0
        return (np.concatenate(feat).astype(np.int64), np.concatenate(thr), np.concatenate(left).astype(np.int64),
                np.concatenate(right).astype(np.int64), np.concatenate(val), offsets, onehot, self._max_depth())

    def _max_depth(self) -> int:
        best = 0
        for t in self.trees:
            depth = {0: 0}
            for i, (lo, hi) in enumerate(zip(t.left, t.right)):  # children follow parents
                if lo != -1:
                    depth[lo] = depth[hi] = depth[i] + 1
            best = max(best, max(depth.values()))
        return best

    def scores(self, X) -> np.ndarray:
        """Class scores of samples ``X`` (``(n_samples, n_features)`` or one feature vector)."""
        X = np.asarray(X, np.float64)
        single = X.ndim == 1
        X = np.atleast_2d(X).astype(np.float32).astype(np.float64)
        if X.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} features, got {X.shape[1]}")
        feat, thr, left, right, val, offsets, onehot, depth = self._tables
        n = X.shape[0]
        node = np.broadcast_to(offsets, (n, offsets.size))
        flat = X.ravel()
        base = (np.arange(n, dtype=np.int64) * X.shape[1])[:, None]
        for _ in range(depth):  # one vectorised step per tree level
            go_left = flat[base + feat[node]] <= thr[node]
            node = np.where(go_left, left[node], right[node])
        out = np.asarray(self.init, np.float64) + val[node] @ onehot
        return out[0] if single else out

    def predict(self, x) -> str:
        """Class name with the highest score for one feature vector."""
        return self.classes[int(np.argmax(self.scores(x)))]
