"""Recipe steps that combine models: ensemble, cascade and merge.

Members are named scikit-learn estimators from an allow-list (no import paths in recipes), or
``current``: the model the previous steps produced, used prefit and frozen.
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
    key = "stages" if kind == "cascade" else "members"
    raw = fields.pop(key, None)
    if kind != "merge":
        if not raw or not isinstance(raw, dict):
            raise ConfigError(f"missing key {key!r}: a mapping of name -> {{estimator: NAME}} or 'current'")
        members = [_member(n, s) for n, s in raw.items()]
    else:
        members = []
    params = fields.pop("params", {}) or {}
    if fields:
        allowed = ["method", key, "params"]
        k = sorted(fields)[0]
        raise ConfigError(f"unknown key {k!r}; allowed: {', '.join(allowed)}.{close_matches(k, allowed)}")
    return {"method": method, "members": members, "params": params}, {}


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
        raise ConfigError("a merge step needs several models of one architecture; call ss.merge from Python "
                          "(recipes support prune, distill, quantize, ensemble and cascade)")
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
