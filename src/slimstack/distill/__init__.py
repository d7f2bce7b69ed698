"""Knowledge distillation: train a small student to reproduce a large teacher or an ensemble.

``ss.distill(teacher, student, ss.DistillConfig(...), train=..., val=...)`` returns a
:class:`DistillResult`. It dispatches through :data:`REGISTRY` like every verb: the causal-LM
handler (``_lm``) takes causal-LM students, the module handler (``_module``) every other torch
module. The pieces are kept apart: teachers (``_teachers``, kinds in :data:`TEACHER_KINDS`), pure
loss functions (``losses``, names in ``losses.OUTPUT_LOSSES``/``FEATURE_LOSSES``), augmentations
(:data:`AUGMENTS`), the objectives that join them (``_objective``, ``_lm``) and the training loop
every slimstack technique shares (:class:`Trainer`, from ``slimstack._training``).
"""

from .._training import Trainer, TrainingDivergedError, TrainSettings
from . import _losses as losses
from ._api import distill
from ._augment import AUGMENTS, Augment
from ._config import DistillConfig
from ._lm import CausalLMDistillHandler, topk_kl
from ._module import ModuleDistillHandler
from ._registry import REGISTRY, DistillHandler
from ._result import DistillResult
from ._teachers import (
    TEACHER_KINDS,
    EnsembleTeacher,
    ModuleTeacher,
    PrecomputedTeacher,
    Teacher,
    TeacherKind,
    register_teacher_kind,
    teacher_targets,
)

__all__ = [
    "AUGMENTS", "Augment", "CausalLMDistillHandler", "DistillConfig", "DistillHandler", "DistillResult",
    "EnsembleTeacher", "ModuleDistillHandler", "ModuleTeacher", "PrecomputedTeacher", "REGISTRY", "TEACHER_KINDS",
    "Teacher", "TeacherKind", "Trainer", "TrainSettings", "TrainingDivergedError", "distill", "losses",
    "register_teacher_kind", "teacher_targets", "topk_kl",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, distill)  # ss.distill(...) calls the verb; ss.distill.<name> reaches this package
