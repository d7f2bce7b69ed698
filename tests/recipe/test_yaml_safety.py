"""Hostile or malformed recipe files: each fails in one line naming the problem (exit 2), fast."""

import re
import time
import tracemalloc

import pytest

import slimstack as ss
from slimstack.cli import main
from slimstack.recipe import load_recipe, validate_recipe

GOOD = """\
name: t
model: {estimator: LogisticRegression, params: {max_iter: 300}}
data: {name: iris}
steps:
  - ensemble: {members: {lr: current, nb: {estimator: GaussianNB}}}
"""


def _bomb(levels: int, width: int = 9) -> str:
    """``levels`` nested anchors, each a list of ``width`` aliases of the one before: width**levels leaves."""
    names = [f"l{i}" for i in range(levels)]
    text = f"{names[0]}: &{names[0]} [{', '.join(['boom'] * width)}]\n"
    for prev, cur in zip(names, names[1:]):
        text += f"{cur}: &{cur} [{', '.join([f'*{prev}'] * width)}]\n"
    return GOOD + text


def test_a_nine_level_alias_bomb_fails_fast_with_bounded_memory():
    text = _bomb(9)  # 9**9 = 387 million leaves once expanded
    match = r"line \d+: more than 10,000 values once aliases are expanded"
    t0 = time.perf_counter()
    with pytest.raises(ss.ConfigError, match=match):
        load_recipe(text)
    seconds = time.perf_counter() - t0
    tracemalloc.start()  # memory measured on a second call: tracing slows the walk down
    try:
        with pytest.raises(ss.ConfigError, match=match):
            load_recipe(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1.0, seconds
    assert peak < 30_000_000, peak  # bytes; expanding even 6 levels took 508 MB before the bound


def test_small_anchors_and_aliases_still_work():
    text = GOOD.replace("data: {name: iris}", "data: &d {name: iris}") + "x_unused: *d\n"
    with pytest.raises(ss.ConfigError, match="unknown key 'x_unused'"):  # expanded fine, then refused as a key
        load_recipe(text)
    shared = GOOD.replace("params: {max_iter: 300}", "params: &p {max_iter: 300}").replace(
        "nb: {estimator: GaussianNB}", "nb: {estimator: LogisticRegression, params: *p}")
    assert load_recipe(shared).steps[0]["ensemble"]["members"]["nb"]["params"] == {"max_iter": 300}


@pytest.mark.parametrize(
    "text, match",
    [
        (GOOD + "loop: &a [1, *a]\n", r"line 6: an alias refers to the mapping or list that contains it"),
        (GOOD + "loop: &m {k: *m}\n", r"line 6: an alias refers to the mapping or list that contains it"),
        (GOOD.replace("name: t", "name: !!python/name:os.system t"), r"line 1: the tag .*python/name:os.system.* not allowed"),
        (GOOD.replace("data: {name: iris}", "data: !!python/object/apply:os.getcwd []"), r"line 3: the tag .*python/object/apply"),
        (GOOD.replace("data: {name: iris}", "data: !!set {iris}"), r"line 3: the tag 'tag:yaml.org,2002:set' is not allowed"),
        (GOOD.replace("data: {name: iris}", "base: &b {name: iris}\ndata:\n  <<: *b"), r"line 5: YAML merge keys \(<<\)"),
        (GOOD.replace("name: t", "? [a, b]\n: t"), r"line 1: a key must be a plain name or number"),
        (GOOD.replace("name: t", "? {a: 1}\n: t"), r"line 1: a key must be a plain name or number"),
        (GOOD + "name: u\n", r"line 6: duplicate key 'name' \(first at line 1\)"),
        (GOOD.replace("max_iter: 300", "max_iter: 300, max_iter: 5"), r"line 2: duplicate key 'max_iter'"),
        (GOOD.replace("name: iris", "name: iris, seed: 0, seed: 1"), r"line 3: duplicate key 'seed'"),
        (GOOD + "tolerance: .nan\n", r"line 6: '.nan' is not a finite number"),
        (GOOD + "tolerance: -.inf\n", r"line 6: '-.inf' is not a finite number"),
    ],
)
def test_malformed_yaml_is_one_line_with_its_line(text, match):
    with pytest.raises(ss.ConfigError, match=match):
        load_recipe(text)


@pytest.mark.parametrize(
    "payload, match",
    [
        (GOOD.encode("utf-16"), "UTF-16/UTF-32 encoded; save it as UTF-8"),
        (GOOD.encode("utf-16-le"), "UTF-16/UTF-32 encoded"),
        (b"name: t\nmodel: \xff\xfe\x00garbage\n", r"not UTF-8 text \(byte 15"),
        (GOOD.replace("name: t", "name: t\nname: u").encode(), "duplicate key 'name'"),
        (b"a: &a [1, *a]\n", "alias refers to the mapping or list that contains it"),
        (b"x: !!python/name:builtins.exec ''\n", "python/name:builtins.exec"),
        (_bomb(7).encode(), "alias bomb"),
    ],
)
def test_cli_validate_and_run_exit_2_in_one_line(tmp_path, capsys, payload, match):
    f = tmp_path / "r.yaml"
    f.write_bytes(payload)
    for argv in (["validate", str(f)], ["run", str(f), "-o", str(tmp_path / "out")]):
        assert main(argv) == 2  # a traceback would raise out of main instead
        err = capsys.readouterr().err
        assert re.search(match, err), err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_utf8_with_bom_is_read(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert validate_recipe(f).name == "t"
