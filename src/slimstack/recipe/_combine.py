"""Recipe steps that combine models: ensemble, cascade and merge.

Ensemble and cascade members are named scikit-learn estimators from an allow-list (no import
paths in recipes), or ``current``: the model the previous steps produced, used prefit and frozen.
Merge models are ``current``, ``original`` or saved models (``{path: FOLDER}``) of one architecture,
merged in weight space by :func:`slimstack.merge`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, close_matches

__all__ = ["parse_combine", "run_combine", "ESTIMATORS"]


def _estimators() -> dict[str, Any]:
    from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm, tree

    return {
        "LogisticRegression": linear_model.LogisticRegression,
        "RidgeClassifier": linear_model.RidgeClassifier,
        "RandomForestClassifier": ensemble.RandomForestClassifier,
        "ExtraTreesClassifier": ensemble.ExtraTreesClassifier,
        "HistGradientBoostingClassifier": ensemble.HistGradientBoostingClassifier,
        "GradientBoostingClassifier": ensemble.GradientBoostingClassifier,
        "KNeighborsClassifier": neighbors.KNeighborsClassifier,
        "SVC": svm.SVC,
        "GaussianNB": naive_bayes.GaussianNB,
        "DecisionTreeClassifier": tree.DecisionTreeClassifier,
        "MLPClassifier": neural_network.MLPClassifier,
    }


ESTIMATORS = ("LogisticRegression", "RidgeClassifier", "RandomForestClassifier", "ExtraTreesClassifier",
              "HistGradientBoostingClassifier", "GradientBoostingClassifier", "KNeighborsClassifier", "SVC",
              "GaussianNB", "DecisionTreeClassifier", "MLPClassifier")
_METHODS = {"ensemble": ("VotingEnsemble", "StackingEnsemble", "EnsembleSelection"), "cascade": ("Cascade",),
            "merge": ("uniform", "greedy_soup", "task_arithmetic", "ties")}


def _member(name: str, spec: Any) -> dict[str, Any]:
    if spec == "current" or (isinstance(spec, dict) and spec.get("estimator") == "current"):
        return {"name": name, "estimator": "current"}
    if not isinstance(spec, dict) or "estimator" not in spec:
        raise ConfigError(f"member {name!r} must be {{estimator: NAME, params: {{...}}, scale: bool}} or 'current'")
    unknown = set(spec) - {"estimator", "params", "scale"}
    if unknown:
        raise ConfigError(f"member {name!r}: unknown key {sorted(unknown)[0]!r}; allowed: estimator, params, scale")
    est = spec["estimator"]
    if est not in ESTIMATORS:
        raise ConfigError(f"member {name!r}: unknown estimator {est!r}; allowed: current, {', '.join(ESTIMATORS)}."
                          f"{close_matches(est, ESTIMATORS)}")
    cls = _estimators()[est]
    params = spec.get("params") or {}
    try:
        cls(**params)
    except TypeError as exc:
        raise ConfigError(f"member {name!r}: {est} does not take these params ({exc})") from None
    return {"name": name, "estimator": est, "params": params, "scale": bool(spec.get("scale", False))}


def parse_combine(kind: str, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = dict(fields)
    method = fields.pop("method", _METHODS[kind][0])
    if method not in _METHODS[kind]:
        raise ConfigError(f"unknown method {method!r}; allowed for {kind}: {', '.join(_METHODS[kind])}."
                          f"{close_matches(method, _METHODS[kind])}")
    if kind == "merge":
        from ._merge_step import parse_merge

        return parse_merge(method, fields), {}
    key = "stages" if kind == "cascade" else "members"
    raw = fields.pop(key, None)
    if not raw or not isinstance(raw, dict):
        raise ConfigError(f"missing key {key!r}: a mapping of name -> {{estimator: NAME}} or 'current'")
    members = [_member(n, s) for n, s in raw.items()]
    params = fields.pop("params", {}) or {}
    if fields:
        allowed = ["method", key, "params"]
        k = sorted(fields)[0]
        raise ConfigError(f"unknown key {k!r}; allowed: {', '.join(allowed)}.{close_matches(k, allowed)}")
    if not isinstance(params, dict):
        raise ConfigError(f"params must be a mapping of {method} arguments, got {params!r}")
    _check_params(method, members, params)
    return {"method": method, "members": members, "params": params}, {}


def _check_params(method: str, members: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """Run the estimator's own parameter checks now, so ``validate`` rejects what ``fit`` would."""
    from .. import ensemble

    cls = getattr(ensemble, method)
    try:
        est = cls([(m["name"], None) for m in members], **params)
    except TypeError as exc:
        raise ConfigError(f"params: {method} does not take these ({exc})") from None
    checks = [getattr(est, n) for n in ("_validate_params", "_check_weights") if hasattr(est, n)]
    try:
        for check in checks:
            if check.__module__.startswith("slimstack"):  # not scikit-learn's own _validate_params
                check(len(members)) if check.__name__ == "_check_weights" else check()
    except ConfigError as exc:
        raise ConfigError(f"params: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"params: {method} cannot use {params!r} ({exc})") from None


def _build(member: dict[str, Any], current: Any, example: Any) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..ensemble import Frozen, TorchClassifier

    if member["estimator"] == "current":
        import torch

        if isinstance(current, torch.nn.Module):
            shape = None if example is None else tuple(example.shape[1:])
            return TorchClassifier(current, input_shape=shape)
        return Frozen(current)
    est = _estimators()[member["estimator"]](**member["params"])
    return make_pipeline(StandardScaler(), est) if member["scale"] else est


def run_combine(kind: str, model: Any, config: dict[str, Any], extra: dict[str, Any], ctx: Any):
    from .. import ensemble

    if kind == "merge":
        from ._merge_step import run_merge

        return run_merge(model, config, ctx)
    train, val = ctx.train, ctx.val
    X, y = train.X.reshape(len(train.X), -1), train.y
    members = [(m["name"], _build(m, model, ctx.example_inputs)) for m in config["members"]]
    params = dict(config["params"])
    if kind == "ensemble":
        est = getattr(ensemble, config["method"])(members, **params)
        est.fit(X, y)
        return est, {"method": config["method"], "members": [m["name"] for m in config["members"]],
                     "params": params, "fitted": {k: _plain_attr(getattr(est, k, None))
                                                   for k in ("weights_", "counts_") if hasattr(est, k)}}
    est = ensemble.Cascade(members, **params)
    est.fit(X, y)
    rec = {"stages": [m["name"] for m in config["members"]], "thresholds": _plain_attr(getattr(est, "thresholds_", None)),
           "stage_share": _plain_attr(getattr(est, "stage_share_", None)), "curve": _plain_attr(getattr(est, "curve_", None))}
    return est, rec


def _plain_attr(v: Any) -> Any:
    from ._steps import plain

    return plain(v)
