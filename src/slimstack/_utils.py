"""Small shared helpers: seeding, thread control, atomic file writes."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["seed_everything", "kept_global_rng", "keeps_global_rng", "threads", "atomic_dir", "atomic_file", "any_grad_mode"]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _plain(value):
    """``value`` with inference tensors (made under ``torch.inference_mode``) replaced by normal copies."""
    import torch

    if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and value.is_inference():
        return value.clone()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()} if any(_has_inference(v) for v in value.values()) else value
    if isinstance(value, list | tuple) and any(_has_inference(v) for v in value):
        return type(value)(_plain(v) for v in value)
    return value


def _has_inference(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.is_inference()


def any_grad_mode(fn):
    """Run a verb with autograd available whatever mode the caller is in; the caller's mode is restored.

    Tracing (Torch-Pruning), Taylor importance, recovery, QAT and distillation need gradients, and a
    natural place to call a verb is inside ``torch.no_grad()`` or ``torch.inference_mode()``. Inside,
    the verb decides where it wants gradients off; tensors the caller made in inference mode are
    copied to normal tensors, which autograd may save. Leaving the ``with`` blocks restores the
    caller's grad and inference modes, also when the verb raises.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode(False), torch.enable_grad():
            args = tuple(_plain(a) for a in args)
            kwargs = {k: _plain(v) for k, v in kwargs.items()}
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def kept_global_rng() -> Iterator[None]:
    """Restore the global ``random``, numpy and torch generators on exit.

    Library verbs seed the global generators (layer initialisation and dropout draw from them) for
    determinism; this keeps that seeding from resetting the caller's own random stream.
    """
    import torch

    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


def keeps_global_rng(fn):
    """Decorator form of :func:`kept_global_rng` for the public verbs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with kept_global_rng():
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Fix the intra-op thread count of torch and of numpy's BLAS for the block, then restore."""
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``target``; on success it replaces ``target`` by rename.

    A crash inside the block leaves ``target`` as it was (old content or absent), never half-written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w", *, permissions: int | None = None) -> Iterator:
    """Open a temporary file next to ``target``; rename it over ``target`` when the block succeeds.

    Readers see the old file or the whole new one, never a part; a failed block leaves the old file.
    The file is owner-only (``mkstemp``) unless ``permissions`` (e.g. ``0o644`` for a shared cache) says.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if permissions is not None:
            os.chmod(tmp, permissions)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
