"""Pruning that really shrinks and speeds up models (``ss.prune``).

Unstructured magnitude and N:M pruning zero weights and save them compactly; structured pruning
(Torch-Pruning for torch models, slimstack's own head/FFN cutting for BERT encoders) removes whole
channels, neurons and heads for a smaller dense model; tree pruning cuts scikit-learn trees by
cost complexity. Every result carries a per-layer record of what was removed and why.
"""

from . import _encoder_io, _nm, _sparse_io, _structured_handler, _trees, _unstructured  # noqa: F401  (handlers, formats)
# after the general handlers, which refuse causal LMs: dispatch then reaches these for an LM
from . import _lm_io, _lm_sparse, _lm_structured  # noqa: F401, I001  (causal-LM handlers and sparse LM format)
from ._lm_configs import LayerDrop, WandaPruning, WidthPruning
from ._api import prune
from ._configs import MagnitudePruning, NMPruning, StructuredPruning, TreePruning
from ._encoder_io import PrunedEncoderFormat
from ._nm import is_nm, nm_mask
from ._result import LayerRecord, PruneResult
from ._sensitivity import sensitivity
from ._sparse_io import SparseFormat, mark_sparse, sparsity_marker
from ._unstructured import magnitude_masks, polynomial_schedule

__all__ = [
    "LayerDrop", "LayerRecord", "MagnitudePruning", "NMPruning", "PruneResult", "PrunedEncoderFormat", "SparseFormat",
    "StructuredPruning", "TreePruning", "is_nm", "magnitude_masks", "mark_sparse", "nm_mask", "polynomial_schedule",
    "prune", "sensitivity", "sparsity_marker", "WandaPruning", "WidthPruning",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, prune)  # ss.prune(...) calls the verb; ss.prune.<name> reaches this package
