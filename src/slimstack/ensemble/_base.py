"""What every ensemble shares: member validation, input checks, folds and the cache hand-off."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import TransformerMixin, is_classifier, is_regressor
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from ..errors import ConfigError, DataError, ModelError, close_matches
from ._members import as_member, is_frozen
from ._oof import MemberFit, OOFCache, make_folds

__all__ = ["EnsembleBase", "TransformingEnsemble", "choice_error"]


def choice_error(param: str, value, choices) -> ConfigError:
    """The error for a parameter outside its allowed strings: the value, the choices, the nearest."""
    allowed = ", ".join(repr(c) for c in choices)
    return ConfigError(f"{param}={value!r} is not allowed; use one of {allowed}.{close_matches(value, choices)}")


class EnsembleBase(_BaseComposition):
    """Base of the combiners. Subclasses set ``_classifier`` and implement ``fit``."""

    _classifier = True

    # -- scikit-learn parameter plumbing: "lr__C" reaches the member named "lr" -----------------
    def get_params(self, deep=True):
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        self._set_params("estimators", **params)
        return self

    @property
    def named_estimators(self) -> dict:
        return dict(self.estimators)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            members = [as_member(est, classifier=self._classifier) for _, est in self.estimators]
            tags.input_tags.allow_nan = all(get_tags(est).input_tags.allow_nan for est in members)
        except (TypeError, ValueError):
            tags.input_tags.allow_nan = False
        return tags

    # -- checks where the input enters ------------------------------------------------------------
    def _members(self) -> list[tuple[str, object]]:
        ests = self.estimators
        if not isinstance(ests, (list, tuple)) or not ests:
            raise ConfigError(f"estimators={ests!r} is not allowed; pass a non-empty list of (name, estimator) "
                              "pairs, e.g. [('lr', LogisticRegression()), ('rf', RandomForestClassifier())].")
        pairs = []
        for item in ests:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ConfigError(f"estimators entry {item!r} is not a (name, estimator) pair; write it as ('name', est).")
            name, est = item[0], as_member(item[1], classifier=self._classifier)
            if not hasattr(est, "fit"):
                raise ModelError(f"member {name!r} ({type(est).__name__}) has no fit method; pass a scikit-learn "
                                 "estimator, an nn.Module, an ONNX model or ss.Frozen(fitted_estimator).")
            want, kind = (is_classifier, "classifier") if self._classifier else (is_regressor, "regressor")
            inner = getattr(est, "estimator", est) if is_frozen(est) else est
            if not want(inner):
                raise ModelError(f"member {name!r} ({type(inner).__name__}) is not a {kind}; a {type(self).__name__} "
                                 f"combines {kind}s only.")
            pairs.append((name, est))
        self._validate_names([n for n, _ in pairs])
        return pairs

    def _check_X_y(self, X, y, members):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=None, y_numeric=not self._classifier)
        y = column_or_1d(y, warn=True)
        if X.dtype.kind in "fc" and np.isnan(X).any():
            for name, est in members:
                if not get_tags(est).input_tags.allow_nan:
                    raise DataError(
                        f"X contains NaN and member {name!r} ({type(est).__name__}) cannot take NaN; impute first "
                        "(make_pipeline(SimpleImputer(), model)) or drop that member.")
        if self._classifier:
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise DataError(f"y has 1 class ({self.classes_[0]!r}); an ensemble classifier needs at least 2 "
                                "classes. Check the labels or the rows selected.")
        return X, y

    def _check_X(self, X):
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=None)

    def _check_frozen_classes(self, fits: dict[str, MemberFit]) -> None:
        if not self._classifier:
            return
        for name, fit in fits.items():
            if fit.frozen:
                got = np.asarray(fit.models[0].classes_)
                if not (len(got) == len(self.classes_) and np.array_equal(got, self.classes_)):
                    raise ModelError(
                        f"member {name!r} predicts classes {got.tolist()[:10]} but y has classes "
                        f"{self.classes_.tolist()[:10]}; members must share one class set. Refit that member on "
                        "all classes or pass TorchClassifier(..., classes=...) listing its output labels.")

    def _check_cv(self) -> None:
        cv = self.cv
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool) and cv < 2:
            raise ConfigError(f"cv={cv} is too small; use an int >= 2 or a splitter such as StratifiedKFold(5).")

    def _cache(self) -> OOFCache:
        if self.cache is None:
            return OOFCache()
        if not isinstance(self.cache, OOFCache):
            raise ConfigError(f"cache={self.cache!r} is not allowed; pass None or an ss.OOFCache().")
        return self.cache

    def _folds(self, X, y, groups):
        self._check_cv()
        return make_folds(self.cv, X, y, groups, classifier=self._classifier, random_state=self.random_state)

    def _record_fits(self, cache: OOFCache, before: int) -> None:
        self.n_fits_ = cache.n_fits - before


class TransformingEnsemble(TransformerMixin, EnsembleBase):
    """An ensemble whose ``transform`` returns the members' outputs (voting, stacking)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # member outputs (labels, probabilities), not X's dtype
        return tags
