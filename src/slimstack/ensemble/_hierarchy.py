"""Coarse-to-fine classification: a router picks a group of classes, a specialist picks the class.

Classes that a flat model confuses with each other tend to need features the rest do not; a
specialist trained only on those classes can spend its capacity on telling them apart, and the
router only has to solve an easier, coarser problem. Groups come from the user or from the
confusion matrix of a flat model's out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import AgglomerativeClustering
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, assert_all_finite, check_is_fitted, column_or_1d

from ..errors import ConfigError, DataError, ModelError
from ._stage_checks import is_fitted, row_indexable

__all__ = ["HierarchicalClassifier", "groups_from_confusion"]

ROUTINGS = ("hard", "soft")


def groups_from_confusion(confusion: np.ndarray, n_groups: int) -> np.ndarray:
    """Cluster classes so that classes confused with each other share a group.

    The row-normalised confusion matrix is symmetrised (``P + P.T``, diagonal dropped), turned into
    a distance ``1 - S / max(S)`` and clustered by complete-linkage agglomeration (groups join
    only when all their classes are confused, which keeps groups balanced). Returns a group
    index per class; groups are numbered by their smallest class index, so the result is
    deterministic.

    Examples
    --------
    >>> c = np.array([[8, 2, 0], [3, 7, 0], [0, 0, 10]])
    >>> groups_from_confusion(c, 2)
    array([0, 0, 1])
    """
    c = np.asarray(confusion, dtype=float)
    k = len(c)
    if not 1 <= n_groups <= k:
        raise ConfigError(f"n_groups={n_groups} must be between 1 and the number of classes ({k})")
    if n_groups == k:
        return np.arange(k)
    if n_groups == 1:
        return np.zeros(k, dtype=int)
    p = c / np.maximum(c.sum(axis=1, keepdims=True), 1.0)
    s = p + p.T
    np.fill_diagonal(s, 0.0)
    dist = 1.0 - s / s.max() if s.max() > 0 else np.ones_like(s)
    np.fill_diagonal(dist, 0.0)
    labels = AgglomerativeClustering(n_clusters=n_groups, metric="precomputed", linkage="complete").fit_predict(dist)
    first = {lab: np.flatnonzero(labels == lab).min() for lab in np.unique(labels)}
    renumber = {lab: i for i, lab in enumerate(sorted(first, key=first.get))}
    return np.array([renumber[lab] for lab in labels])


class HierarchicalClassifier(ClassifierMixin, BaseEstimator):
    """A router predicts a group of classes; a per-group specialist predicts the class.

    Parameters
    ----------
    router : estimator, default=None
        Classifier with ``predict_proba`` fitted on group labels. ``None`` uses
        ``LogisticRegression(max_iter=1000)``. Not needed (and not fitted) when there is one group.
    specialists : estimator or dict of str to estimator, default=None
        One estimator used as a template for every group, or a dict from group name to estimator
        (required names: every group with two or more classes). ``None`` uses a clone of ``router``.
        A group with a single class needs no specialist.
    groups : dict of str to list of labels, or list of lists, default=None
        The class groups; every class in exactly one group. A list gets names ``"g0"``, ``"g1"``...
        ``None`` derives them from the confusion of ``grouping_estimator`` (see
        :func:`groups_from_confusion`).
    routing : {"hard", "soft"}, default="hard"
        ``"hard"`` runs only the specialist of the router's top group (cheap);
        ``"soft"`` sums every specialist's probabilities weighted by the router's group
        probabilities, ``p(c) = p(g(c)) * p(c | g(c))`` (more robust to router mistakes, costs all
        specialists).
    n_groups : int, default=None
        Number of derived groups; ``None`` uses ``round(sqrt(n_classes))``.
    grouping_estimator : estimator, default=None
        The flat model whose out-of-fold confusion matrix defines the groups (default: a clone of
        ``router``).
    cv : int, default=5
        Folds of the out-of-fold predictions used to derive groups.
    prefit : bool, default=False
        Use ``router`` and ``specialists`` as fitted (``groups`` required, router labels are the
        group names). ``fit`` then only checks them.
    random_state : int, default=0
        Seed of the fold split used to derive groups.

    Attributes
    ----------
    classes_ : ndarray
    groups_ : dict of str to ndarray
        The class labels of every group.
    confusion_ : ndarray or None
        The out-of-fold confusion matrix groups were derived from (None when groups were given).
    router_ : estimator or None
        None when there is a single group.
    specialists_ : dict of str to estimator or None
        None for single-class groups.
    record_ : list of str
        What was left out and why (single-class groups, a single group).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = HierarchicalClassifier(LogisticRegression(max_iter=2000), n_groups=3).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 1, 2])
    """

    def __init__(
        self,
        router: Any = None,
        specialists: Any = None,
        groups: Mapping[str, Sequence[Any]] | Sequence[Sequence[Any]] | None = None,
        *,
        routing: str = "hard",
        n_groups: int | None = None,
        grouping_estimator: Any = None,
        cv: int = 5,
        prefit: bool = False,
        random_state: int | None = 0,
    ):
        self.router = router
        self.specialists = specialists
        self.groups = groups
        self.routing = routing
        self.n_groups = n_groups
        self.grouping_estimator = grouping_estimator
        self.cv = cv
        self.prefit = prefit
        self.random_state = random_state

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "specialists_")
        members = [self.router_] + list(self.specialists_.values())
        for m in members:
            if m is not None and hasattr(m, "n_features_in_"):
                return m.n_features_in_
        raise AttributeError("no member of this HierarchicalClassifier records n_features_in_")

    def __sklearn_tags__(self):
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        # Rows pass to router and specialists unchanged: sparse input works when every member takes it.
        members = [self.router if self.router is not None else LogisticRegression(max_iter=1000)]
        spec = self.specialists
        members += list(spec.values()) if isinstance(spec, Mapping) else ([spec] if spec is not None else [])
        members += [self.grouping_estimator] if self.grouping_estimator is not None else []
        try:
            tags.input_tags.sparse = all(get_tags(m).input_tags.sparse for m in members)
            tags.input_tags.allow_nan = all(get_tags(m).input_tags.allow_nan for m in members)
        except (TypeError, ValueError, AttributeError):
            tags.input_tags.sparse = tags.input_tags.allow_nan = False
        return tags

    def _finite(self, X: Any) -> Any:
        """Refuse NaN/inf unless every member takes them: with a single group only the specialist
        runs, so a member that accepts NaN would otherwise decide for the whole model."""
        X = row_indexable(X)
        if not self.__sklearn_tags__().input_tags.allow_nan and (isinstance(X, np.ndarray) or sp.issparse(X)) \
                and np.issubdtype(X.dtype, np.number):
            assert_all_finite(X.data if sp.issparse(X) else X, input_name="X")
        return X

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> HierarchicalClassifier:
        """Fit the router on group labels and each specialist on its group's rows."""
        if self.routing not in ROUTINGS:
            raise ConfigError(f"routing={self.routing!r} is not allowed; use one of {ROUTINGS}")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        X = self._finite(X)
        if _num_samples(X) != len(y):
            raise DataError(f"HierarchicalClassifier.fit got {_num_samples(X)} rows in X but {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise DataError(f"HierarchicalClassifier needs at least 2 classes in y, got only one class: {self.classes_.tolist()}")
        self.record_: list[str] = []
        router = self.router if self.router is not None else LogisticRegression(max_iter=1000)

        if self.groups is None:
            if self.prefit:
                raise ConfigError("prefit=True needs groups=...: the router's labels must be named groups")
            self.confusion_ = self._oof_confusion(X, y, router)
            k = len(self.classes_)
            n_groups = int(round(np.sqrt(k))) if self.n_groups is None else int(self.n_groups)
            labels = groups_from_confusion(self.confusion_, n_groups)
            self.groups_ = {f"g{g}": self.classes_[labels == g] for g in range(labels.max() + 1)}
        else:
            self.confusion_ = None
            self.groups_ = _check_groups(self.groups, self.classes_)
        names = list(self.groups_)
        group_of = {c: i for i, name in enumerate(names) for c in self.groups_[name].tolist()}
        y_group = np.array([group_of[c] for c in y.tolist()])

        if self.prefit:
            self._take_prefit(names)
        else:
            self._fit_members(X, y, y_group, names, router)
        self._router_cols = self._router_columns(names)
        self._spec_cols = {name: np.searchsorted(self.classes_, np.asarray(est.classes_))
                           for name, est in self.specialists_.items() if est is not None}
        return self

    def _oof_confusion(self, X: Any, y: np.ndarray, router: Any) -> np.ndarray:
        flat = clone(self.grouping_estimator if self.grouping_estimator is not None else router)
        folds = min(int(self.cv), int(np.unique(y, return_counts=True)[1].min()))
        if folds >= 2:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
            pred = cross_val_predict(flat, X, y, cv=cv)
        else:
            pred = flat.fit(X, y).predict(X)
            self.record_.append("groups derived from in-sample predictions: a class has fewer than 2 samples, "
                                "so out-of-fold predictions were impossible")
        return confusion_matrix(y, pred, labels=self.classes_)

    def _fit_members(self, X: Any, y: np.ndarray, y_group: np.ndarray, names: list[str], router: Any) -> None:
        templates = self._specialist_templates(names, router)
        if len(names) == 1:
            self.router_ = None
            self.record_.append("single group: no router needed")
        else:
            self.router_ = clone(router).fit(X, y_group)
        self.specialists_ = {}
        for g, name in enumerate(names):
            if len(self.groups_[name]) == 1:
                self.specialists_[name] = None
                self.record_.append(f"group {name!r} has the single class {self.groups_[name][0]!r}: no specialist")
                continue
            rows = np.flatnonzero(y_group == g)
            self.specialists_[name] = clone(templates[name]).fit(_safe_indexing(X, rows), y[rows])

    def _specialist_templates(self, names: list[str], router: Any) -> dict[str, Any]:
        multi = [n for n in names if len(self.groups_[n]) > 1]
        if isinstance(self.specialists, Mapping):
            missing = [n for n in multi if n not in self.specialists]
            if missing:
                raise ConfigError(f"specialists has no entry for group {missing[0]!r} (classes "
                                  f"{self.groups_[missing[0]].tolist()}); give one per group with 2+ classes: {multi}")
            extra = [n for n in self.specialists if n not in self.groups_]
            if extra:
                raise ConfigError(f"specialists names group {extra[0]!r}, which is not a group; groups are {names}")
            return {n: self.specialists[n] for n in multi}
        template = self.specialists if self.specialists is not None else router
        return {n: template for n in multi}

    def _take_prefit(self, names: list[str]) -> None:
        if len(names) > 1:
            if self.router is None or not is_fitted(self.router):
                raise ModelError("prefit=True needs a fitted router (trained on the group names as labels)")
            got = sorted(map(str, np.asarray(self.router.classes_).tolist()))
            if got != sorted(names):
                raise ModelError(f"the router predicts {got} but the groups are {sorted(names)}; train the router "
                                 "on the group names as labels")
        self.router_ = self.router if len(names) > 1 else None
        specs = self.specialists if isinstance(self.specialists, Mapping) else {}
        self.specialists_ = {}
        for name in names:
            want = self.groups_[name]
            if len(want) == 1:
                self.specialists_[name] = None
                continue
            est = specs.get(name)
            if est is None or not is_fitted(est):
                raise ModelError(f"prefit=True needs a fitted specialist for group {name!r} (classes {want.tolist()})")
            got = np.asarray(est.classes_)
            if len(got) != len(want) or not np.array_equal(np.sort(got), want):
                raise ModelError(f"specialist {name!r} predicts classes {got.tolist()} but group {name!r} holds "
                                 f"{want.tolist()}; fit it on exactly its group's classes")
            self.specialists_[name] = est

    def _router_columns(self, names: list[str]) -> np.ndarray | None:
        """Router proba column -> group index."""
        if self.router_ is None:
            return None
        labels = np.asarray(self.router_.classes_).tolist()
        if self.prefit:
            return np.array([names.index(str(lab)) for lab in labels])
        return np.asarray(labels, dtype=int)

    # -- predict -----------------------------------------------------------------------------
    def _group_proba(self, X: Any) -> np.ndarray:
        n = _num_samples(X)
        names = list(self.groups_)
        out = np.zeros((n, len(names)))
        if self.router_ is None:
            out[:, 0] = 1.0
        else:
            out[:, self._router_cols] = np.asarray(self.router_.predict_proba(X))
        return out

    def _within(self, name: str, X: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns of ``classes_`` and the within-group probabilities for the group's rows."""
        est = self.specialists_[name]
        if est is None:
            return np.searchsorted(self.classes_, self.groups_[name]), np.ones((n, 1))
        return self._spec_cols[name], np.asarray(est.predict_proba(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Hard routing: the top group's specialist; soft: sum of group prob times specialist prob."""
        check_is_fitted(self, "specialists_")
        X = self._finite(X)
        group_p = self._group_proba(X)
        proba = np.zeros((len(group_p), len(self.classes_)))
        top = group_p.argmax(axis=1)
        for g, name in enumerate(self.groups_):
            rows = np.flatnonzero(top == g) if self.routing == "hard" else np.flatnonzero(group_p[:, g] > 0)
            if len(rows) == 0:
                continue
            cols, p = self._within(name, _safe_indexing(X, rows), len(rows))
            weight = 1.0 if self.routing == "hard" else group_p[rows, g][:, None]
            proba[np.ix_(rows, cols)] += weight * p
        return proba

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "specialists_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_group(self, X: Any) -> np.ndarray:
        """The router's group name for every row."""
        check_is_fitted(self, "specialists_")
        X = self._finite(X)
        return np.asarray(list(self.groups_))[self._group_proba(X).argmax(axis=1)]


def _check_groups(groups: Any, classes: np.ndarray) -> dict[str, np.ndarray]:
    """Every class of ``y`` in exactly one non-empty group, and no class outside ``y``."""
    if isinstance(groups, Mapping):
        items = [(str(k), list(v)) for k, v in groups.items()]
    elif isinstance(groups, list | tuple):
        items = [(f"g{i}", list(v)) for i, v in enumerate(groups)]
    else:
        raise ConfigError(f"groups must be a dict of name -> classes or a list of class lists, got {groups!r}")
    seen: dict[Any, str] = {}
    known = set(classes.tolist())
    out: dict[str, np.ndarray] = {}
    for name, members in items:
        if not members:
            raise ConfigError(f"group {name!r} is empty; every group needs at least one class")
        for c in members:
            c = c.item() if isinstance(c, np.generic) else c
            if c in seen:
                raise ConfigError(f"class {c!r} is in group {seen[c]!r} and again in group {name!r}; "
                                  "put every class in exactly one group")
            if c not in known:
                raise ConfigError(f"group {name!r} lists class {c!r}, which is not in y (classes: "
                                  f"{classes.tolist()}); remove it or fix the label")
            seen[c] = name
        out[name] = np.sort(np.asarray(members, dtype=classes.dtype))
    missing = [c for c in classes.tolist() if c not in seen]
    if missing:
        raise ConfigError(f"class {missing[0]!r} is in no group; add it to one of {list(out)} "
                          f"(groups must cover all classes: {classes.tolist()})")
    return out
