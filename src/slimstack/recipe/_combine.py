"""Recipe steps that combine models in output space: ensemble and cascade (merge: ``_merge_step``).

Members are named scikit-learn estimators from an allow-list (no import paths in recipes), or
``current``: the model the previous steps produced, used prefit and frozen.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, close_matches
from ._record import plain, step_record

__all__ = ["ESTIMATORS", "build_member", "parse_cascade", "parse_ensemble", "run_cascade", "run_ensemble"]


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
_METHODS = {"ensemble": ("VotingEnsemble", "StackingEnsemble", "EnsembleSelection"), "cascade": ("Cascade",)}


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


def parse_ensemble(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _parse("ensemble", fields)


def parse_cascade(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _parse("cascade", fields)


def _parse(kind: str, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = dict(fields)
    method = fields.pop("method", _METHODS[kind][0])
    if method not in _METHODS[kind]:
        raise ConfigError(f"unknown method {method!r}; allowed for {kind}: {', '.join(_METHODS[kind])}."
                          f"{close_matches(method, _METHODS[kind])}")
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


def build_member(member: dict[str, Any], current: Any, example: Any) -> Any:
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


def _fit_members(model: Any, config: dict[str, Any], ctx: Any) -> tuple[list[tuple[str, Any]], Any, Any]:
    train = ctx.train
    members = [(m["name"], build_member(m, model, ctx.example_inputs)) for m in config["members"]]
    return members, train.X.reshape(len(train.X), -1), train.y


def run_ensemble(model: Any, config: dict[str, Any], extra: dict[str, Any], ctx: Any) -> tuple[Any, dict[str, Any]]:
    from .. import ensemble

    members, X, y = _fit_members(model, config, ctx)
    params = dict(config["params"])
    est = getattr(ensemble, config["method"])(members, **params)
    est.fit(X, y)
    names = [m["name"] for m in config["members"]]
    return est, step_record("ensemble", summary={"method": config["method"], "members": names, "params": params},
                            records=[{"layer": n, "action": "member"} for n in names],
                            fitted={k: plain(getattr(est, k, None)) for k in ("weights_", "counts_") if hasattr(est, k)})


def run_cascade(model: Any, config: dict[str, Any], extra: dict[str, Any], ctx: Any) -> tuple[Any, dict[str, Any]]:
    from .. import ensemble

    members, X, y = _fit_members(model, config, ctx)
    est = ensemble.Cascade(members, **dict(config["params"]))
    est.fit(X, y)
    names = [m["name"] for m in config["members"]]
    return est, step_record("cascade", summary={"method": "Cascade", "stages": names, "params": config["params"]},
                            records=[{"layer": n, "action": "stage"} for n in names], stages=names,
                            **{k: plain(getattr(est, f"{k}_", None)) for k in ("thresholds", "stage_share", "curve")})
