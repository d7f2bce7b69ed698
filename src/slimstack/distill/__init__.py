"""Knowledge distillation: train a small student to reproduce a large teacher or an ensemble.

``ss.distill(teacher, student, ss.DistillConfig(...), train=..., val=...)`` returns a
:class:`DistillResult`. The pieces are kept apart: teachers (``_teachers``), pure loss functions
(``_losses``), the objective that joins them (``_objective``) and a generic trainer (``_trainer``).
"""

from . import _losses as losses
from ._api import DistillResult, distill
from ._config import DistillConfig
from ._teachers import EnsembleTeacher, ModuleTeacher, PrecomputedTeacher, Teacher, teacher_targets
from ._trainer import Trainer, TrainingDivergedError, TrainSettings

__all__ = [
    "DistillConfig", "DistillResult", "EnsembleTeacher", "ModuleTeacher", "PrecomputedTeacher", "Teacher",
    "Trainer", "TrainSettings", "TrainingDivergedError", "distill", "losses", "teacher_targets",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, distill)  # ss.distill(...) calls the verb; ss.distill.<name> reaches this package
