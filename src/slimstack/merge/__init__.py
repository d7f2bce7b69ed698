"""Weight-space merging: uniform and greedy soups, task arithmetic and TIES.

``ss.merge(models, method=...)`` returns one model of the same type whose inference costs one
forward pass, where an output ensemble of the same models costs one per member. The merging rules
are pure functions on state dicts in :mod:`slimstack.merge._methods`; each has one handler in
:mod:`slimstack.merge._handlers`. ``ss.merge(..., return_result=True)`` returns a :class:`MergeResult`
with one record per merged tensor.
"""

from ._configs import GreedySoup, MergeConfig, TaskArithmetic, TiesMerging, UniformSoup
from ._merge import METHODS, merge
from ._result import MergeResult

__all__ = ["METHODS", "GreedySoup", "MergeConfig", "MergeResult", "TaskArithmetic", "TiesMerging", "UniformSoup",
           "merge"]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, merge)  # ss.merge(...) calls the verb; ss.merge.<name> reaches this package
