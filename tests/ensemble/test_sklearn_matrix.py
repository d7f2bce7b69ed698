"""scikit-learn's full ``check_estimator`` over a matrix of settings and member kinds (issue 13.4).

``test_sklearn_contract.py`` covers one or two settings per ensemble with linear and tree members;
this matrix adds the defaults of every estimator (a default-built ``EnsembleSelection`` failed
``check_fit2d_1feature`` because its cv=5 exceeded a 3-row class; a default ``Cascade`` accepted
sparse input while its tags said it could not), the other options, and kNN and pipeline members.
Members are kept tiny and seeded so the whole matrix stays fast.
"""

from __future__ import annotations

import warnings

import pytest
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

import slimstack as ss


def lin():
    return "lin", LogisticRegression(max_iter=200)


def tree():
    return "tree", DecisionTreeClassifier(max_depth=3, random_state=0)


def knn():
    return "knn", KNeighborsClassifier(3)


def pipe():
    return "pipe", make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))


def rknn():
    return "knn", KNeighborsRegressor(3)


def rpipe():
    return "pipe", make_pipeline(StandardScaler(), LinearRegression())


def rtree():
    return "tree", DecisionTreeRegressor(max_depth=3, random_state=0)


MATRIX = [
    # defaults, with the simplest members
    ss.EnsembleSelection([lin(), tree()]),
    ss.StackingEnsemble([lin(), tree()]),
    ss.StackingEnsembleRegressor([("lin", LinearRegression()), rtree()]),
    ss.Cascade([lin(), tree()], costs=[1.0, 2.0]),
    ss.HierarchicalClassifier(),
    # options, with kNN and pipeline members
    ss.VotingEnsemble([knn(), pipe()], voting="hard"),
    ss.VotingEnsembleRegressor([rknn(), rpipe()], weights="learn", cv=3, random_state=0),
    ss.EnsembleSelection([knn(), pipe()], scoring="accuracy", pooling="geometric", ensemble_size=5, cv=3,
                         random_state=0),
    ss.StackingEnsemble([knn(), pipe()], passthrough=True, cv=3, random_state=0),
    ss.StackingEnsembleRegressor([rknn(), rpipe()], passthrough=True, cv=3, random_state=0),
    ss.Cascade([("nb", GaussianNB()), knn()], confidence="margin", cv=None, risk=None, costs=[1.0, 5.0]),
    ss.Cascade([pipe(), tree(), knn()], confidence="entropy", cost_budget=5.0, costs=[1.0, 2.0, 10.0],
               n_thresholds=5, cv=3),
    ss.HierarchicalClassifier(LogisticRegression(max_iter=200), DecisionTreeClassifier(random_state=0),
                              routing="soft", cv=3),
]


@parametrize_with_checks(MATRIX)
def test_check_estimator_matrix(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer folds on the checks' 10-row sets is said by a warning
        check(estimator)


@pytest.mark.parametrize("stages, sparse", [
    ([lin(), tree()], True),
    ([lin(), knn()], True),
    ([("nb", GaussianNB()), tree()], False),           # GaussianNB needs dense input
])
def test_cascade_sparse_tag_follows_its_stages(stages, sparse):
    import numpy as np

    cascade = ss.Cascade(stages, costs=[1.0, 2.0], cv=2)
    assert get_tags(cascade).input_tags.sparse is sparse
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((40, 4)) * (rng.random((40, 4)) > 0.5))
    y = np.arange(40) % 2
    if sparse:
        assert cascade.fit(X, y).predict(X).shape == (40,)
    else:
        with pytest.raises((TypeError, ValueError), match="(?i)sparse"):
            cascade.fit(X, y)
