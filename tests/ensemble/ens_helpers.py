"""Shared helpers of the ensemble tests (small seeded members and splits)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier


def small_members():
    return [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB()),
            ("dt", DecisionTreeClassifier(max_depth=3, random_state=0))]


def split(X, y, frac=0.7, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    cut = int(frac * len(y))
    return X[idx[:cut]], y[idx[:cut]], X[idx[cut:]], y[idx[cut:]]
