"""Hand-built hostile .skops files: each must be refused by ss.load, by ``slimstack measure`` and as a
recipe ``model: {path: ...}``, without running anything (each payload would write a marker file)."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

import slimstack as ss
from slimstack.cli import main as cli
from slimstack.recipe import run_recipe


def _json(value):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def _tuple(*items):
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
            "content": [i if isinstance(i, dict) else _json(i) for i in items]}


def _call(module, name, *args):
    """A node that calls ``module.name(*args)`` while the file loads."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": _tuple(*args)}


def _func(module, name):
    return {"__class__": name, "__module__": module, "__loader__": "FunctionNode"}


def _dict(**items):
    return {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
            "content": {k: v if isinstance(v, dict) and "__loader__" in v else _json(v) for k, v in items.items()},
            "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                          "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
                                      for _ in items]}}


def _estimator(module, name, **attrs):
    return {"__class__": name, "__module__": module, "__loader__": "ObjectNode", "content": _dict(**attrs)}


def _transformer(func):
    """FunctionTransformer whose ``func`` (called on every transform) is the given node."""
    return _estimator("sklearn.preprocessing._function_transformer", "FunctionTransformer", func=func,
                      inverse_func=None, validate=False, accept_sparse=False, check_inverse=True,
                      feature_names_out=None, kw_args=None, inv_kw_args=None)


def _wrap(node):
    """Put a payload inside a real-looking fitted-model attribute, as an attacker would."""
    return _estimator("sklearn.linear_model._logistic", "LogisticRegression", C=1.0, max_iter=100, payload=node)


def _payloads(tmp, marker):
    code = f"open({str(marker)!r}, 'w').write('ran')"
    victim = tmp / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("mine")
    (tmp / "hostile_mod.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Evil: pass\n")
    evil_pickle = tmp / "evil.pkl"

    class _Evil:
        def __reduce__(self):
            return (exec, (code,))

    evil_pickle.write_bytes(pickle.dumps(_Evil()))
    np.save(tmp / "evil.npy", np.array([_Evil()], dtype=object), allow_pickle=True)
    return {
        "exec": _call("builtins", "exec", code),
        "eval": _call("builtins", "eval", code),
        "exec_inside_estimator": _wrap(_call("builtins", "exec", code)),
        "import": _call("builtins", "__import__", "hostile_mod"),
        "getattr_chain": _transformer(_call("builtins", "getattr", _call("builtins", "__import__", "hostile_mod"),
                                            "Evil")),
        "os_system": _call("os", "system", f"touch {marker}"),
        "posix_system": _call("posix", "system", f"touch {marker}"),
        "subprocess_run": _call("subprocess", "run", ["touch", str(marker)]),
        "subprocess_popen": _call("subprocess", "Popen", ["touch", str(marker)]),
        "shutil_rmtree": _wrap(_call("shutil", "rmtree", str(victim))),
        "numpy_load_pickle": _call("numpy", "load", str(tmp / "evil.npy"), None, True),
        "slimstack_unpickle": _call("slimstack.io._registry", "_load_pickle", str(evil_pickle)),
        "function_transformer_eval": _transformer(_func("builtins", "eval")),
        "function_transformer_exec": _transformer(_func("builtins", "exec")),
        "function_transformer_os_system": _transformer(_func("os", "system")),
        "function_as_estimator_parameter": _wrap(_func("builtins", "exec")),
        "numpy_function_as_parameter": _transformer(_func("numpy", "load")),
        "operator_methodcaller": _transformer({"__class__": "methodcaller", "__module__": "operator",
                                               "__loader__": "OperatorFuncNode",
                                               "attrs": _tuple("system", f"touch {marker}")}),
        "object_from_imported_module": _wrap({"__class__": "Evil", "__module__": "hostile_mod",
                                              "__loader__": "ObjectNode"}),
        "type_node_builtins_exec": _wrap({"__class__": "exec", "__module__": "builtins", "__loader__": "TypeNode"}),
    }


def _write(path, node):
    schema = dict(node, protocol=2, _skops_version="0.16.0")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return path


NAMES = sorted([
    "exec", "eval", "exec_inside_estimator", "import", "getattr_chain", "os_system", "posix_system",
    "subprocess_run", "subprocess_popen", "shutil_rmtree", "numpy_load_pickle", "slimstack_unpickle",
    "function_transformer_eval", "function_transformer_exec", "function_transformer_os_system",
    "function_as_estimator_parameter", "numpy_function_as_parameter", "operator_methodcaller",
    "object_from_imported_module", "type_node_builtins_exec"])


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # so "import hostile_mod" would succeed if anything tried
    marker = tmp_path / "MARKER"

    def build(name):
        payloads = _payloads(tmp_path, marker)
        assert sorted(payloads) == NAMES
        return _write(tmp_path / f"{name}.skops", payloads[name])

    yield build, marker
    assert not marker.exists(), "a hostile file ran code"
    assert (tmp_path / "victim" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", NAMES)
def test_ss_load_refuses_without_running(hostile, name):
    build, marker = hostile
    path = build(name)
    with pytest.raises(ss.UnsafeFileError, match=r"pass trusted=True"):
        ss.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_saved_folder_holding_a_hostile_file_is_refused(hostile, tmp_path, name):
    build, marker = hostile
    folder = tmp_path / "looks_innocent"
    folder.mkdir()
    build(name).rename(folder / "model.skops")
    (folder / "slimstack.json").write_text(json.dumps({"format": "sklearn", "format_version": 1,
                                                       "spec": {"file": "model.skops"}}))
    with pytest.raises(ss.UnsafeFileError):
        ss.load(folder)


@pytest.mark.parametrize("name", ["exec", "function_transformer_eval", "numpy_load_pickle", "getattr_chain"])
def test_cli_measure_refuses_with_exit_2(hostile, capsys, name):
    build, marker = hostile
    assert cli(["measure", str(build(name)), "--data", "iris", "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "trusted" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["exec", "function_transformer_eval", "slimstack_unpickle"])
def test_recipe_model_path_refuses(hostile, tmp_path, name):
    build, marker = hostile
    path = build(name)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: hostile\nmodel:\n  path: {path}\ndata:\n  name: iris\nsteps: []\n")
    with pytest.raises(ss.UnsafeFileError):
        run_recipe(recipe, tmp_path / "out")


def test_plain_skops_agrees_these_are_untrusted(hostile):
    """Sanity check of the payloads: skops itself reports each one's callable as untrusted."""
    import skops.io as sio

    build, _ = hostile
    for name in NAMES:
        assert sio.get_untrusted_types(file=str(build(name))), name


def test_trusted_true_runs_the_file_as_documented(hostile, tmp_path):
    """trusted=True means: this file may run code. The marker proves the payload was real."""
    build, marker = hostile
    ss.load(build("exec"), trusted=True)
    assert marker.read_text() == "ran"
    marker.unlink()


def test_real_models_still_load(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    ds = ss.datasets.load("iris")
    for i, est in enumerate([RandomForestClassifier(n_estimators=3, random_state=0),
                             HistGradientBoostingClassifier(max_iter=3, random_state=0),
                             MLPClassifier(max_iter=5, random_state=0),
                             make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                                           MLPClassifier(max_iter=5, random_state=0)),
                             ss.StackingEnsemble([("rf", RandomForestClassifier(n_estimators=2, random_state=0)),
                                                  ("mlp", MLPClassifier(max_iter=5, random_state=0))], cv=3)]):
        est.fit(ds.X, ds.y)
        back = ss.load(ss.save(est, tmp_path / f"m{i}"))
        np.testing.assert_array_equal(back.predict(ds.X), est.predict(ds.X))


def _tampered_tree(tmp_path, field, value):
    from sklearn.tree import DecisionTreeClassifier

    ds = ss.datasets.load("iris")
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(ds.X, ds.y)
    path = ss.save(tree, tmp_path / "tree") / "model.skops"
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    node_file = next(n for n in files if n.endswith(".npy") and b"left_child" in files[n][:400])
    import io

    nodes = np.load(io.BytesIO(files[node_file]), allow_pickle=False)
    nodes[field][0] = value
    buf = io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    files[node_file] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return path


@pytest.mark.parametrize(("field", "value", "match"), [
    ("left_child", 10_000, "left child 10000"),
    ("right_child", 0, "right child 0"),
    ("feature", 99, "feature 99 of 4"),
])
def test_tree_with_out_of_range_nodes_is_refused(tmp_path, field, value, match):
    path = _tampered_tree(tmp_path, field, value)
    with pytest.raises(ss.UnsafeFileError, match=match):
        ss.load(path)
