"""Teachers: one model, an ensemble, or outputs computed once and cached on disk.

A teacher turns raw input rows into targets. Classifier targets are logits (an ensemble gives the
log of its mean probability, which softmax maps back to that probability), encoder targets are
embeddings, regressor targets are values. Teachers never train: they run in eval mode under
``inference_mode`` and are never modified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, ModelError
from ._cache import cached, read_tensors, write_tensors
from ._data import Rows, is_text_model

__all__ = ["Teacher", "ModuleTeacher", "EnsembleTeacher", "PrecomputedTeacher", "TEACHER_KINDS", "TeacherKind",
           "register_teacher_kind", "as_teacher", "teacher_targets"]


class Teacher:
    """Base class: ``outputs(raw_rows) -> Tensor`` of targets, and a fingerprint for the cache."""

    output: str = "logits"  # "logits" | "embedding" | "value"

    def outputs(self, raw: Any) -> torch.Tensor:
        raise NotImplementedError

    def fingerprint(self, rows: Rows) -> str:
        raise NotImplementedError

    @property
    def module(self) -> nn.Module | None:
        """The torch module whose layers feature matching can hook (None if there is none)."""
        return None


class ModuleTeacher(Teacher):
    """A single ``nn.Module``: a classifier (logits), a regressor (values) or a sentence encoder."""

    def __init__(self, model: nn.Module, task: str | None = None):
        self.model = model
        if is_text_model(model):
            self.output = "embedding"
        elif task == "regression":
            self.output = "value"
        else:
            self.output = "logits"

    @property
    def module(self) -> nn.Module:
        return self.model

    @torch.inference_mode()
    def outputs(self, raw: Any) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            if is_text_model(self.model):
                out = self.model(**self.model.tokenize(raw))
            else:
                out = self.model(torch.as_tensor(raw))
        finally:
            self.model.train(was)
        return _first_tensor(out).float()

    def fingerprint(self, rows: Rows) -> str:
        h = hashlib.sha256(type(self.model).__qualname__.encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        if is_text_model(self.model):
            h.update(str(getattr(self.model, "max_length", "")).encode())
        return h.hexdigest()


class EnsembleTeacher(Teacher):
    """The mean of several members' class probabilities (or of their values, for regressors).

    Members may be ``nn.Module`` classifiers (softmax of their logits) or any object with
    ``predict_proba`` (scikit-learn models, slimstack ensembles). The target handed to the student
    is ``log(mean p)``, so Hinton's loss softens the ensemble's averaged distribution.

    Examples
    --------
    >>> teacher = EnsembleTeacher([cnn_a, cnn_b, cnn_c])          # doctest: +SKIP
    >>> d = ss.distill(teacher, student, ss.DistillConfig(), train=ds)   # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Any], weights: Sequence[float] | None = None, task: str | None = None):
        members = list(members)
        if not members:
            raise ModelError("an ensemble teacher needs at least one member; pass a list of models")
        for i, m in enumerate(members):
            if not (isinstance(m, nn.Module) or hasattr(m, "predict_proba") or hasattr(m, "predict")):
                raise ModelError(
                    f"ensemble member {i} ({type(m).__name__}) is neither a torch module nor has predict_proba; "
                    "pass nn.Module classifiers or fitted estimators"
                )
        if weights is not None and len(weights) != len(members):
            raise ModelError(f"got {len(weights)} weights for {len(members)} ensemble members; pass one weight each")
        w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.members = members
        self.weights = w / w.sum()
        self.output = "value" if task == "regression" else "logits"

    @torch.inference_mode()
    def outputs(self, raw: Any) -> torch.Tensor:
        total = None
        for w, member in zip(self.weights, self.members):
            part = _member_output(member, raw, self.output) * float(w)
            total = part if total is None else total + part
        if self.output == "value":
            return total
        return torch.log(total.clamp(min=1e-12))

    def fingerprint(self, rows: Rows) -> str:
        h = hashlib.sha256(json.dumps([float(w) for w in self.weights]).encode())
        for m in self.members:
            h.update(_fingerprint_member(m, rows).encode())
        return h.hexdigest()


class PrecomputedTeacher(Teacher):
    """Outputs already computed, one row per training row (logits, embeddings or values)."""

    def __init__(self, targets: Any, output: str):
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        self.output = output

    def outputs(self, raw: Any) -> torch.Tensor:
        raise ModelError("precomputed teacher outputs cover the training rows only; pass val data with labels")

    def fingerprint(self, rows: Rows) -> str:
        return hashlib.sha256(self.targets.numpy().tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TeacherKind:
    """What ``ss.distill`` accepts as a teacher: ``accepts(obj)`` and ``build(obj, task) -> Teacher``."""

    name: str
    accepts: Callable[[Any], bool]
    build: Callable[[Any, str | None], Teacher]


TEACHER_KINDS: list[TeacherKind] = []


def register_teacher_kind(kind: TeacherKind) -> TeacherKind:
    """Let ``ss.distill`` take another kind of teacher object; kinds are tried in registration order."""
    TEACHER_KINDS.append(kind)
    return kind


register_teacher_kind(TeacherKind("teacher", lambda t: isinstance(t, Teacher), lambda t, task: t))
register_teacher_kind(TeacherKind("module", lambda t: isinstance(t, nn.Module), ModuleTeacher))
register_teacher_kind(TeacherKind("ensemble", lambda t: isinstance(t, list | tuple),
                                  lambda t, task: EnsembleTeacher(t, task=task)))
register_teacher_kind(TeacherKind("precomputed", lambda t: isinstance(t, np.ndarray | torch.Tensor),
                                  lambda t, task: PrecomputedTeacher(t, "value" if task == "regression" else "logits")))
register_teacher_kind(TeacherKind("estimator", lambda t: hasattr(t, "predict_proba") or hasattr(t, "predict"),
                                  lambda t, task: EnsembleTeacher([t], task=task)))


def as_teacher(teacher: Any, task: str | None) -> Teacher:
    """Wrap what the user passed: a module, a list (ensemble), an estimator, or an output array."""
    for kind in TEACHER_KINDS:
        if kind.accepts(teacher):
            return kind.build(teacher, task)
    raise ModelError(
        f"cannot use a {type(teacher).__name__} as a teacher; pass an nn.Module, a list of models (an ensemble), "
        "an object with predict_proba, or an array of precomputed outputs"
    )


def teacher_targets(teacher: Teacher, rows: Rows, *, batch_size: int = 256, cache_dir: str | None = None,
                    rank: int = 0, barrier: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run ``teacher`` once over every row (or read its outputs from ``cache_dir``).

    The cache file is named by a hash of the teacher's weights (or outputs, for estimators), the
    data and the output kind, so a changed teacher or data set never reads stale targets. Under
    ``torchrun`` rank 0 computes and writes; the other ranks wait at ``barrier`` and read.
    """
    if isinstance(teacher, PrecomputedTeacher):
        if len(teacher.targets) != len(rows):
            raise DataError(
                f"precomputed teacher outputs have {len(teacher.targets)} rows but the training data has {len(rows)}; "
                "pass one output row per training row, in the same order"
            )
        return teacher.targets, {"teacher": "precomputed", "cache": None}
    info: dict[str, Any] = {"teacher": type(teacher).__name__, "cache": None}
    if cache_dir is None:
        return _run_teacher(teacher, rows, batch_size), info
    key = hashlib.sha256(f"{teacher.fingerprint(rows)}|{rows.content_hash()}|{teacher.output}".encode()).hexdigest()
    targets = cached(Path(cache_dir) / f"teacher-{key[:24]}.safetensors", info,
                     read=lambda p: _read_cache(p, key, len(rows)), compute=lambda: _run_teacher(teacher, rows, batch_size),
                     write=lambda p, t: write_tensors(p, key, {"targets": t}, rows=str(len(t))),
                     rank=rank, barrier=barrier)
    return targets, info


def _run_teacher(teacher: Teacher, rows: Rows, batch_size: int) -> torch.Tensor:
    n = len(rows)
    # Sentences go longest first so each padded batch holds similar lengths; order is restored.
    order = np.argsort([-len(t) for t in rows.texts], kind="stable") if rows.is_text else np.arange(n)
    out: torch.Tensor | None = None
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        part = teacher.outputs(rows.raw(idx))
        if out is None:
            out = torch.empty((n, *part.shape[1:]), dtype=torch.float32)
        out[torch.as_tensor(idx)] = part
    if not torch.isfinite(out).all():
        raise ModelError("the teacher produced NaN or inf outputs on the training data; check the teacher and inputs")
    return out


def _read_cache(path: Path, key: str, n: int) -> torch.Tensor | None:
    got = read_tensors(path, key)
    return got["targets"] if got is not None and len(got["targets"]) == n else None


def _member_output(member: Any, raw: Any, output: str) -> torch.Tensor:
    if isinstance(member, nn.Module):
        was = member.training
        member.eval()
        try:
            out = _first_tensor(member(torch.as_tensor(raw))).float()
        finally:
            member.train(was)
        return out.reshape(len(out), -1).squeeze(-1) if output == "value" else torch.softmax(out, dim=-1)
    x = _estimator_input(member, raw)
    if output == "value":
        return torch.as_tensor(np.asarray(member.predict(x), dtype=np.float32))
    if not hasattr(member, "predict_proba"):
        raise ModelError(f"ensemble member {type(member).__name__} has no predict_proba; a classifier teacher needs it")
    return torch.as_tensor(np.asarray(member.predict_proba(x), dtype=np.float32))


def _estimator_input(member: Any, raw: Any) -> Any:
    """Estimators fitted on flat rows get image batches flattened (digits: (n, 1, 8, 8) -> (n, 64))."""
    x = np.asarray(raw)
    n_in = getattr(member, "n_features_in_", None)
    if x.ndim > 2 and (n_in is None or n_in == int(np.prod(x.shape[1:]))):
        return x.reshape(len(x), -1)
    return x


def _fingerprint_member(member: Any, rows: Rows) -> str:
    if isinstance(member, nn.Module):
        return ModuleTeacher(member).fingerprint(rows)
    # Estimators have no portable weight bytes: fingerprint their type, parameters and outputs on a probe.
    h = hashlib.sha256(type(member).__qualname__.encode())
    if hasattr(member, "get_params"):
        h.update(repr(sorted((k, repr(v)) for k, v in member.get_params(deep=False).items())).encode())
    probe = rows.raw(np.arange(min(len(rows), 64)))
    out = _member_output(member, probe, "value" if not hasattr(member, "predict_proba") else "logits")
    h.update(out.numpy().astype(np.float32).tobytes())
    return h.hexdigest()


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict | Sequence) and not isinstance(out, str):
        values = out.values() if isinstance(out, dict) else out
        for v in values:
            if isinstance(v, torch.Tensor):
                return v
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise ModelError(f"the teacher returned {type(out).__name__}; distillation needs a tensor output")
