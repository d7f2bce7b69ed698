"""Bad input is refused where it enters, with a message that names the value and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ensemble.ens_helpers import small_members
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

import slimstack as ss


def _lr_on(X, y, labels):
    keep = np.isin(y, labels)
    return LogisticRegression(max_iter=300).fit(X[keep], y[keep])


@pytest.mark.parametrize("make, match", [
    (lambda: ss.VotingEnsemble(small_members(), weights=[1, 2]), "weights has 2 values but there are 3 members"),
    (lambda: ss.VotingEnsemble(small_members(), weights=[1, -1, 1]), "negative or non-finite"),
    (lambda: ss.VotingEnsemble(small_members(), weights=[0, 0, 0]), "all zero"),
    (lambda: ss.VotingEnsemble(small_members(), weights="lern"), "use None, 'learn'"),
    (lambda: ss.VotingEnsemble(small_members(), voting="mean"), "voting='mean' is not allowed; use one of 'soft', 'hard'"),
    (lambda: ss.VotingEnsemble(small_members(), pooling="harmonic"), "pooling='harmonic' is not allowed.*Did you mean 'arithmetic'"),
    (lambda: ss.VotingEnsemble([("svc", SVC()), ("lr", LogisticRegression())]), "'svc' .* has no predict_proba"),
    (lambda: ss.VotingEnsemble([]), "non-empty list of \\(name, estimator\\)"),
    (lambda: ss.VotingEnsemble([("a", LogisticRegression()), ("a", LogisticRegression())]), "unique"),
    (lambda: ss.VotingEnsemble(small_members(), voting="hard", temperature=True), "temperature=True needs voting='soft'"),
    (lambda: ss.EnsembleSelection(small_members(), ensemble_size=0), "ensemble_size=0"),
    (lambda: ss.EnsembleSelection([("svc", SVC()), ("lr", LogisticRegression())]), "has no predict_proba"),
    (lambda: ss.StackingEnsemble(small_members(), cv=1), "cv=1 is too small"),
    (lambda: ss.StackingEnsemble(small_members(), stack_method="proba"), "stack_method='proba'"),
    (lambda: ss.StackingEnsemble(small_members(), holdout=1.5), "holdout=1.5"),
    (lambda: ss.StackingEnsemble(small_members(), cache={}), "pass None or an ss.OOFCache"),
    (lambda: ss.VotingEnsemble([("r", ss.TorchRegressor(prefit=False))]), "not a classifier"),
])
def test_config_errors(data3, make, match):
    X, y = data3
    with pytest.raises(ValueError, match=match):
        make().fit(X, y)


def test_single_class(data3):
    X, y = data3
    with pytest.raises(ss.DataError, match="y has 1 class"):
        ss.StackingEnsemble(small_members()).fit(X, np.zeros(len(X), int))


def test_cv_larger_than_smallest_class(data3):
    X, y = data3
    y = y.copy()
    y[:4] = 3  # a class of 4 samples
    with pytest.warns(UserWarning, match="cv=5 is larger than the smallest class, which has 4 samples; using cv=4"):
        fitted = ss.StackingEnsemble(small_members(), cv=5).fit(X, y)
    assert 3 in fitted.classes_
    y[4] = 4  # a class of one sample cannot be in a training and a held-out fold
    with pytest.raises(ss.DataError, match="smallest class, which has 1 sample"):
        ss.StackingEnsemble(small_members(), cv=5).fit(X, y)


def test_nan_names_the_member_that_cannot_take_it(data3):
    X, y = data3
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ss.DataError, match="X contains NaN and member 'lr'.*SimpleImputer"):
        ss.VotingEnsemble(small_members()).fit(X, y)
    # members that take NaN are fine
    ok = ss.VotingEnsemble([("hgb", HistGradientBoostingClassifier(max_iter=10, random_state=0))]).fit(X, y)
    assert ok.predict(X[:3]).shape == (3,)


def test_members_with_different_class_sets(data3):
    X, y = data3
    partial = ss.Frozen(_lr_on(X, y, [0, 1]))
    with pytest.raises(ss.ModelError, match="member 'partial' predicts classes \\[0, 1\\] but y has classes \\[0, 1, 2\\]"):
        ss.VotingEnsemble([("partial", partial), ("lr", LogisticRegression())]).fit(X, y)


def test_torch_width_mismatch(data3):
    import torch

    X, y = data3
    clf = ss.TorchClassifier(torch.nn.Linear(8, 2))
    with pytest.raises(ss.ShapeError, match="returns 2 columns but there are 3 classes"):
        clf.fit(X.astype(np.float32), y).predict_proba(X.astype(np.float32))
    with pytest.raises(ss.ModelError, match="prefit=True needs a trained module"):
        ss.TorchClassifier().fit(X, y)


def test_unfitted(data3):
    from sklearn.exceptions import NotFittedError

    X, _ = data3
    for est in (ss.VotingEnsemble(small_members()), ss.EnsembleSelection(small_members()),
                ss.StackingEnsemble(small_members())):
        with pytest.raises(NotFittedError):
            est.predict(X)
