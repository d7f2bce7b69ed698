"""ss.compile: same predictions as the Python estimator (within 1e-5), fallbacks named, bad input caught."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import slimstack as ss

TOL = ss.CompiledModel.tolerance  # float32 arithmetic in the graph: 1e-5 on probabilities

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # SVC(probability=True) in scikit-learn 1.9


def _data(n_classes=3, n=300, seed=0):
    # continuous features: no exact distance ties, so kNN neighbour sets are unique
    X, y = make_classification(n, 8, n_informative=5, n_redundant=1, n_classes=n_classes, random_state=seed)
    return X[: n // 2], y[: n // 2], X[n // 2:], y[n // 2:]


def _members():
    return [("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
            ("rf", RandomForestClassifier(10, random_state=0)),
            ("hgb", HistGradientBoostingClassifier(max_iter=10, random_state=0)),
            ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(7))),
            ("svc", SVC(probability=True, random_state=0)),
            ("mlp", MLPClassifier((16,), max_iter=300, random_state=0)),
            ("nb", GaussianNB())]


ENSEMBLES = {
    "voting": lambda: ss.VotingEnsemble(_members()),
    "voting_learned_geometric": lambda: ss.VotingEnsemble(_members()[:4], weights="learn", temperature=True,
                                                          pooling="geometric", cv=3, random_state=0),
    "selection": lambda: ss.EnsembleSelection(_members()[:4], cv=3, random_state=0),
    "stacking_fold_averaged": lambda: ss.StackingEnsemble(_members()[:5], cv=3, random_state=0),
    "stacking_refit_passthrough": lambda: ss.StackingEnsemble(_members()[:3], cv=3, refit=True, passthrough=True,
                                                              random_state=0),
    "stacking_decision_function": lambda: ss.StackingEnsemble(
        [("lr", LogisticRegression(max_iter=2000)), ("rf", RandomForestClassifier(5, random_state=0))],
        stack_method="auto", cv=3, random_state=0),
    "sklearn_voting": lambda: VotingClassifier(_members()[:4], voting="soft", weights=[1, 2, 1, 1]),
    "sklearn_stacking": lambda: StackingClassifier(_members()[:5], cv=3),
    "cascade": lambda: ss.Cascade([("lr", LogisticRegression(max_iter=2000)),
                                   ("big", ss.VotingEnsemble(_members()[1:3]))], random_state=0),
    "cascade_margin_3_stages": lambda: ss.Cascade([("nb", GaussianNB()), ("lr", LogisticRegression(max_iter=2000)),
                                                   ("rf", RandomForestClassifier(20, random_state=0))],
                                                  confidence="margin", thresholds=[0.8, 0.6]),
    "hierarchical_hard": lambda: ss.HierarchicalClassifier(LogisticRegression(max_iter=2000), groups=[[0, 1], [2]]),
    "hierarchical_soft": lambda: ss.HierarchicalClassifier(LogisticRegression(max_iter=2000), groups=[[0, 1], [2]],
                                                           specialists=RandomForestClassifier(10, random_state=0),
                                                           routing="soft"),
}


@pytest.mark.parametrize("name", sorted(ENSEMBLES))
def test_compiled_matches_python(name):
    Xtr, ytr, Xte, _ = _data()
    est = ENSEMBLES[name]().fit(Xtr, ytr)
    fast = ss.compile(est)
    assert fast.python_members == []
    np.testing.assert_array_equal(fast.classes_, est.classes_)
    assert np.abs(fast.predict_proba(Xte) - est.predict_proba(Xte)).max() < TOL
    np.testing.assert_array_equal(fast.predict(Xte), est.predict(Xte))
    np.testing.assert_allclose(fast.predict_proba(Xte[:1]), est.predict_proba(Xte[:1]), atol=TOL)  # batch 1


def test_cascade_routing_is_in_the_graph_and_skips_the_big_stage():
    import onnx

    Xtr, ytr, Xte, _ = _data()
    casc = ss.Cascade([("lr", LogisticRegression(max_iter=2000)), ("rf", RandomForestClassifier(20, random_state=0))],
                      thresholds=[0.5]).fit(Xtr, ytr)
    fast = ss.compile(casc)
    graph = onnx.load_model_from_string(fast.onnx_bytes).graph
    assert [n.op_type for n in graph.node].count("If") == 1
    assert not any(n.op_type == "TreeEnsembleRegressor" for n in graph.node)  # the forest lives in the If branch
    share = np.bincount(casc.answered_by(Xte), minlength=2)
    assert share[0] > 0 and share[1] > 0  # both branches are exercised
    assert np.abs(fast.predict_proba(Xte) - casc.predict_proba(Xte)).max() < TOL


def test_binary_string_labels_and_hgb_binary():
    Xtr, ytr, Xte, _ = _data(n_classes=2)
    labels = np.array(["neg", "pos"])
    stack = ss.StackingEnsemble(_members()[:3], cv=3, random_state=0).fit(Xtr, labels[ytr])
    fast = ss.compile(stack)
    assert fast.classes_.tolist() == ["neg", "pos"]
    assert np.abs(fast.predict_proba(Xte) - stack.predict_proba(Xte)).max() < TOL
    np.testing.assert_array_equal(fast.predict(Xte), stack.predict(Xte))


def test_hard_voting_predicts_and_has_no_proba():
    Xtr, ytr, Xte, _ = _data()
    vote = ss.VotingEnsemble(_members()[:3], voting="hard").fit(Xtr, ytr)
    fast = ss.compile(vote)
    np.testing.assert_array_equal(fast.predict(Xte), vote.predict(Xte))
    with pytest.raises(AttributeError, match="no predict_proba"):
        fast.predict_proba(Xte)


def test_nan_rows_follow_the_python_estimator():
    Xtr, ytr, Xte, _ = _data()
    rng = np.random.default_rng(0)
    Xtr, Xte = Xtr.copy(), Xte.copy()
    Xtr[rng.random(Xtr.shape) < 0.1] = np.nan
    Xte[rng.random(Xte.shape) < 0.1] = np.nan
    vote = ss.VotingEnsemble([("hgb", HistGradientBoostingClassifier(max_iter=10, random_state=0)),
                              ("rf", RandomForestClassifier(10, random_state=0))]).fit(Xtr, ytr)
    fast = ss.compile(vote)
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte)).max() < TOL
    lr = ss.VotingEnsemble([("lr", LogisticRegression())]).fit(*_data()[:2])
    with pytest.raises(ValueError, match="NaN"):
        lr.predict_proba(Xte)
    with pytest.raises(ss.DataError, match="NaN"):
        ss.compile(lr).predict_proba(Xte)


class _Odd(ClassifierMixin, BaseEstimator):
    """A classifier no converter knows (probabilities from a fixed random projection)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.w_ = np.random.default_rng(0).normal(size=(X.shape[1], len(self.classes_)))
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X):
        z = np.asarray(X) @ self.w_
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def test_unknown_member_stays_in_python_and_is_named():
    Xtr, ytr, Xte, _ = _data()
    vote = ss.VotingEnsemble([("lr", LogisticRegression(max_iter=2000)), ("odd", _Odd())]).fit(Xtr, ytr)
    with pytest.warns(ss.CompileWarning, match=r"'VotingEnsemble/odd' \(_Odd\) stays in Python"):
        fast = ss.compile(vote)
    assert fast.python_members == ["VotingEnsemble/odd"]
    rec = next(r for r in fast.record if r.get("member") == "VotingEnsemble/odd")
    assert "skl2onnx cannot convert _Odd" in rec["reason"]
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte)).max() < TOL
    with pytest.raises(ss.ModelError, match=r"member 'VotingEnsemble/odd' \(_Odd\) cannot be compiled.*fallback='python'"):
        ss.compile(vote, fallback="error")


def test_fallback_inside_a_cascade_branch_sees_only_deferred_rows():
    Xtr, ytr, Xte, _ = _data()
    casc = ss.Cascade([("lr", LogisticRegression(max_iter=2000)), ("odd", _Odd())], thresholds=[0.6]).fit(Xtr, ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ss.CompileWarning)
        fast = ss.compile(casc)
    assert np.abs(fast.predict_proba(Xte) - casc.predict_proba(Xte)).max() < TOL


@pytest.mark.parametrize("bad, err, match", [
    ("unfitted", ss.NotFittedError, "VotingEnsemble is not fitted; call fit"),
    ("fallback", ss.ConfigError, "fallback='pyhton' is not allowed; use 'python'"),
    ("threads", ss.ConfigError, "threads=0 is not allowed"),
    ("regressor", ss.ModelError, "takes classifiers"),
])
def test_bad_input(bad, err, match):
    from sklearn.linear_model import Ridge

    Xtr, ytr, _, _ = _data()
    fitted = ss.VotingEnsemble([("lr", LogisticRegression())]).fit(Xtr, ytr)
    call = {"unfitted": lambda: ss.compile(ss.VotingEnsemble([("lr", LogisticRegression())])),
            "fallback": lambda: ss.compile(fitted, fallback="pyhton"),
            "threads": lambda: ss.compile(fitted, threads=0),
            "regressor": lambda: ss.compile(Ridge().fit(Xtr, ytr))}[bad]
    with pytest.raises(err, match=match):
        call()


def test_wrong_width_is_a_clear_error():
    Xtr, ytr, Xte, _ = _data()
    fast = ss.compile(ss.VotingEnsemble([("lr", LogisticRegression())]).fit(Xtr, ytr))
    with pytest.raises(ss.ShapeError, match="fitted on 8 features"):
        fast.predict(Xte[:, :5])


def test_save_load_without_pickle_and_measure(tmp_path):
    Xtr, ytr, Xte, yte = _data()
    stack = ss.StackingEnsemble(_members()[:4], cv=3, random_state=0).fit(Xtr, ytr)
    fast = ss.compile(stack)
    ss.save(fast, tmp_path / "fast")
    files = sorted(p.name for p in (tmp_path / "fast").iterdir())
    assert files == ["compiled.json", "model.onnx", "slimstack.json"]
    back = ss.load(tmp_path / "fast")
    assert isinstance(back, ss.CompiledModel)
    np.testing.assert_array_equal(back.predict_proba(Xte), fast.predict_proba(Xte))
    tr, ds = ss.datasets.load("breast_cancer", split="train", seed=0), ss.datasets.load("breast_cancer", split="test", seed=0)
    stack = ss.VotingEnsemble(_members()[:3]).fit(tr.X, tr.y)
    fast = ss.compile(stack)
    m_fast = ss.measure(fast, ds, batch_size=64, runs=3, warmup=1)
    m_py = ss.measure(stack, ds, batch_size=64, runs=3, warmup=1)
    assert m_fast.quality == pytest.approx(m_py.quality)
    assert m_fast.size_bytes and m_fast.size_bytes > 0


def test_torch_and_onnx_members_are_spliced_in():
    import torch

    from slimstack.ensemble._members import module_to_onnx_bytes

    Xtr, ytr, Xte, _ = _data()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    onnx_bytes = module_to_onnx_bytes(net, torch.zeros(1, 8))
    vote = ss.VotingEnsemble([("torch", ss.TorchClassifier(net)), ("onnx", ss.OnnxClassifier(onnx_bytes)),
                              ("lr", LogisticRegression(max_iter=2000))]).fit(Xtr.astype(np.float32), ytr)
    fast = ss.compile(vote)
    assert fast.python_members == []
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte.astype(np.float32))).max() < TOL


def test_recipe_compile_step():
    from slimstack.recipe._steps import StepContext, run_step

    Xtr, ytr, Xte, _ = _data()
    vote = ss.VotingEnsemble(_members()[:2]).fit(Xtr, ytr)
    ctx = StepContext(original=vote, train=None, val=None, test=None, example_inputs=None)
    fast, rec = run_step("compile", {"threads": 1}, vote, ctx)
    assert isinstance(fast, ss.CompiledModel) and rec["verb"] == "compile" and rec["summary"]["python_members"] == []
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte)).max() < TOL
    with pytest.raises(ss.ConfigError, match="unknown key 'thread'; allowed for compile: fallback, threads"):
        run_step("compile", {"thread": 1}, vote, ctx)
