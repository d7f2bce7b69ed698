"""Combine models: cascades, hierarchical classifiers (issue 7) and ensembles (issue 6).

Every class here follows the scikit-learn estimator contract (``get_params``/``set_params``,
``clone``, ``fit`` returning ``self``, fitted state ending in ``_``).
"""

from ._cascade import Cascade
from ._hierarchy import HierarchicalClassifier

__all__ = ["Cascade", "HierarchicalClassifier"]
