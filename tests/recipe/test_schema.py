import pytest

import slimstack as ss
from slimstack.recipe import load_recipe

GOOD = """\
name: t
model:
  estimator: LogisticRegression
  params: {max_iter: 500}
data:
  name: iris
steps:
  - ensemble:
      method: VotingEnsemble
      members:
        lr: current
        nb: {estimator: GaussianNB}
"""


def test_a_good_recipe_validates():
    r = load_recipe(GOOD)
    assert r.name == "t" and r.tolerance == 0.01 and r.objective == "latency"
    assert r.step_list()[0][0] == "ensemble"


@pytest.mark.parametrize(
    "change, match",
    [
        (("name: t", "nmae: t"), r"line 1: unknown key 'nmae'; allowed here: .*Did you mean 'name'"),
        (("  name: iris", "  name: iris\n  seeed: 1"), r"line 7: unknown key 'data.seeed'.*Did you mean 'seed'"),
        (("  - ensemble:", "  - ensembel:"), r"line 8: steps\[0\]: unknown step 'ensembel'.*Did you mean 'ensemble'"),
        (("VotingEnsemble", "VotingEnsembel"), r"line 8: steps\[0\].ensemble: unknown method 'VotingEnsembel'.*Did you mean 'VotingEnsemble'"),
        (("GaussianNB", "GausianNB"), r"unknown estimator 'GausianNB'.*Did you mean 'GaussianNB'"),
        (("name: t", "name: t\ntolerance: 1.5"), r"tolerance: Input should be less than 1 \(got 1.5\)"),
        (("name: t", "name: t\nobjective: speed"), r"objective: Input should be 'latency', 'size' or 'throughput'"),
        (("  estimator: LogisticRegression", "  estimator: LogisticRegression\n  zoo: digits_cnn"), r"exactly one of 'zoo'"),
        (("data:\n  name: iris\n", ""), r"missing key 'data'"),
        (("name: t", "name: [t"), r"not valid YAML"),
    ],
)
def test_bad_recipes_name_the_key_line_and_fix(change, match):
    text = GOOD.replace(*change)
    with pytest.raises(ss.ConfigError, match=match):
        load_recipe(text)


def test_missing_file():
    with pytest.raises(ss.ConfigError, match="does not exist"):
        load_recipe("nope.yaml")
