"""The distillation config: what to match, how hard, and how to train."""

from __future__ import annotations

import dataclasses

from .._config import Config, register_config
from .._training import OPTIMIZERS, SCHEDULES
from .._validate import is_number
from ..errors import ConfigError
from ._augment import AUGMENTS
from ._losses import FEATURE_LOSSES, OUTPUT_LOSSES

__all__ = ["DistillConfig"]


@register_config
@dataclasses.dataclass(frozen=True)
class DistillConfig(Config):
    """How ``ss.distill`` trains a student to reproduce its teacher.

    Parameters
    ----------
    loss : {"auto", "kd", "mse", "cosine", "cosine+mse"}
        What the student's outputs are matched against the teacher's with (the names registered in
        ``slimstack.distill.losses.OUTPUT_LOSSES``). ``"kd"`` is Hinton's
        knowledge distillation (KL divergence of temperature-softened outputs, scaled by T^2);
        ``"mse"``/``"cosine"`` suit regression outputs and embeddings. ``"auto"`` picks ``"kd"`` for
        classifiers, ``"cosine"`` for sentence encoders (their embeddings are unit vectors, where MSE
        is the cosine loss rescaled) and ``"mse"`` for regressors.
    temperature : float
        Softens both distributions in ``"kd"`` so the teacher's small probabilities (its "dark
        knowledge") carry signal. Must be > 0.
    alpha : float in [0, 1]
        Weight of the distillation loss; ``1 - alpha`` goes to the hard-label loss (cross-entropy
        or MSE) when the training data has labels. Unlabelled data uses the distillation loss alone.
    features : tuple of (student_layer, teacher_layer) pairs
        Named submodules whose outputs are matched too (hidden-state distillation); a learned
        linear projection bridges different widths. Needs a live teacher (not cached outputs).
    feature_weight, feature_loss
        Weight and kind (``"mse"`` | ``"cosine"``) of the feature loss.
    lr : float or "auto"
        Peak learning rate. ``"auto"`` (the default) picks it per student by a short range test
        with successive halving: each of 1e-3, 3e-3, 1e-2, 3e-2 and 1e-1 trains a copy of the
        student from the same start for a twentieth of the run's steps (25 to 100), the 3 with the
        lowest loss on training rows train as many steps again, and the lowest loss after that
        wins, so a rate that only starts fastest is not chosen (``record["lr"]`` and
        ``record["lr_range_test"]`` say what was tried). One fixed rate cannot suit every student: a
        64-24-10 MLP distilled at 1e-3 for 30 epochs stayed below the same MLP trained on labels
        alone. Sentence-encoder students take 1e-4 instead, causal LMs 5e-5 (a range test would cost
        as much as their training).
    epochs, batch_size, weight_decay, optimizer, schedule, warmup, grad_clip
        The training loop (the one every slimstack technique trains with). ``optimizer`` is
        ``"adamw"`` or ``"sgd"``, ``schedule`` ``"cosine"``, ``"linear"``, ``"constant"`` or
        ``"epoch_cosine"`` (cosine stepped once an epoch). ``batch_size`` is the global batch: under ``torchrun`` each of the
        ``WORLD_SIZE`` processes takes ``batch_size / WORLD_SIZE`` rows. ``warmup`` is the share of
        steps with a linearly rising learning rate.
    max_steps : int, optional
        Stop after this many optimizer steps (for quick runs); the history records it.
    patience : int, optional
        Early stopping: stop when the validation score has not improved for this many epochs. The
        best epoch's weights are returned either way when ``val`` is given.
    checkpoint_dir : str, optional
        Where a checkpoint is written atomically after every epoch; a run that finds one resumes
        from it (with ``resume=True``), so an interrupted run continues where it stopped.
    cache_dir : str, optional
        Teacher outputs on the training data are computed once and stored here (safetensors, named
        by a hash of teacher and data), so an expensive teacher runs a single time.
    augment : {"none", "shift", "noise", "mixup"}
        Perturb each training batch before student and teacher see it, so the teacher labels
        inputs beyond the training rows (the teacher runs on every augmented batch; it cannot be
        cached). ``"shift"`` moves images by up to one pixel (zero padded), ``"noise"`` adds
        Gaussian noise to array features, ``"mixup"`` blends pairs of rows (its batches use the
        distillation loss alone: a blended row has no single hard label). Worth it when the training
        set is small and the teacher is an ensemble, whose gain lies between the training rows.
    augment_scale : float
        For ``"noise"``: the noise standard deviation as a share of each feature's standard
        deviation over the training rows. Must be > 0.
    max_length : int, optional
        Token length for text students during training (evaluation uses the encoder's own). For
        causal LMs: tokens per training window (default: the dataset's window, else 256).
    top_k : int
        Causal LMs only: how many of the teacher's most likely next tokens are cached per position;
        the rest are pooled into one tail outcome (the loss is the KL over top-k plus tail, exact
        when ``top_k`` >= the vocabulary).
    seed : int
        Seeds initialisation of projections, the data order and dropout.
    threads : int, optional
        Intra-op threads for training (None leaves torch's setting alone).
    progress : bool
        Show a progress bar (rank 0 only under ``torchrun``).

    Examples
    --------
    >>> cfg = ss.DistillConfig(temperature=4.0, alpha=0.5, epochs=20)
    >>> cfg.to_dict()["type"]
    'DistillConfig'
    """

    kind = "distill"

    loss: str = "auto"
    temperature: float = 4.0
    alpha: float = 0.5
    features: tuple = ()
    feature_weight: float = 1.0
    feature_loss: str = "mse"
    epochs: int = 20
    batch_size: int = 64
    lr: float | str = "auto"
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup: float = 0.0
    grad_clip: float | None = 5.0
    max_steps: int | None = None
    patience: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = True
    cache_dir: str | None = None
    augment: str = "none"
    augment_scale: float = 0.1
    max_length: int | None = None
    top_k: int = 64
    seed: int = 0
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        OUTPUT_LOSSES.check("DistillConfig.loss", self.loss, also=("auto",))
        FEATURE_LOSSES.check("DistillConfig.feature_loss", self.feature_loss)
        OPTIMIZERS.check("DistillConfig.optimizer", self.optimizer)
        SCHEDULES.check("DistillConfig.schedule", self.schedule)
        AUGMENTS.check("DistillConfig.augment", self.augment)
        if not is_number(self.augment_scale) or self.augment_scale <= 0:
            raise ConfigError(
                f"DistillConfig.augment_scale={self.augment_scale!r} must be a number > 0 "
                "(noise std as a share of each feature's std); e.g. augment_scale=0.1"
            )
        if self.augment != "none" and self.cache_dir is not None:
            raise ConfigError(
                f"DistillConfig.augment={self.augment!r} with cache_dir={self.cache_dir!r}: cached teacher outputs "
                "cover the unaugmented training rows only, while augmentation needs the teacher on every new "
                "batch; drop cache_dir (the teacher then runs on the fly) or set augment='none'"
            )
        if not is_number(self.temperature) or self.temperature <= 0:
            raise ConfigError(
                f"DistillConfig.temperature={self.temperature!r} must be a number > 0; "
                "1.0 leaves the outputs as they are, 2 to 8 is typical for knowledge distillation"
            )
        if not is_number(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"DistillConfig.alpha={self.alpha!r} must lie in [0, 1] (the weight of the "
                "distillation loss; 1 - alpha weights the hard labels); use e.g. alpha=0.5"
            )
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"DistillConfig.{name}={value!r} must be a positive integer")
        for name in ("max_steps", "patience", "max_length", "threads", "top_k"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"DistillConfig.{name}={value!r} must be a positive integer or None")
        if self.lr != "auto" and (not is_number(self.lr) or self.lr <= 0):
            raise ConfigError(f"DistillConfig.lr={self.lr!r} must be 'auto' or a number > 0, e.g. 1e-3 (small nets) "
                              "or 5e-5 (transformers)")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"DistillConfig.weight_decay={self.weight_decay!r} must be >= 0")
        if not is_number(self.feature_weight) or self.feature_weight < 0:
            raise ConfigError(f"DistillConfig.feature_weight={self.feature_weight!r} must be >= 0")
        if not is_number(self.warmup) or not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"DistillConfig.warmup={self.warmup!r} is a share of the steps; use a value in [0, 1)")
        if self.grad_clip is not None and (not is_number(self.grad_clip) or self.grad_clip <= 0):
            raise ConfigError(f"DistillConfig.grad_clip={self.grad_clip!r} must be > 0 or None (no clipping)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"DistillConfig.seed={self.seed!r} must be an integer")
        for pair in self.features:
            if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise ConfigError(
                    f"DistillConfig.features entry {pair!r} must be a (student_layer, teacher_layer) pair "
                    "of module names, e.g. features=(('model.encoder.layer.1', 'model.encoder.layer.3'),)"
                )

    def __post_init__(self) -> None:
        # Pairs arrive as lists from JSON/YAML; keep them hashable tuples.
        object.__setattr__(self, "features", tuple(tuple(p) if isinstance(p, list) else p for p in self.features))
        super().__post_init__()

