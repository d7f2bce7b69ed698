"""Teacher outputs computed once and kept on disk, shared by every distillation handler.

Under ``torchrun`` rank 0 computes and writes while the other ranks wait at a barrier and then
read, so an expensive teacher runs once per cache, not once per process. Files are safetensors
(no pickle) written atomically and carry a key in their metadata: a file whose key differs (other
teacher, data or settings) is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._utils import atomic_file

__all__ = ["cached", "read_tensors", "write_tensors"]

T = TypeVar("T")


def cached(path: Path, info: dict[str, Any], *, read: Callable[[Path], T | None], compute: Callable[[], T],
           write: Callable[[Path, T], None], rank: int = 0, barrier: Callable[[], None] | None = None) -> T:
    """``read(path)`` when it holds the value, else ``compute()`` (rank 0 then ``write``s it); ``info`` says which."""
    info["cache"] = str(path)
    if rank != 0 and barrier is not None:
        barrier()
    if path.exists():
        value = read(path)
        if value is not None:
            info["cache_hit"] = True
            if rank == 0 and barrier is not None:
                barrier()
            return value
    value = compute()
    info["cache_hit"] = False
    if rank == 0:
        write(path, value)
        if barrier is not None:
            barrier()
    return value


def read_tensors(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file written with ``key`` (None when the file holds another key)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        if (fh.metadata() or {}).get("key") != key:
            return None
        return {name: fh.get_tensor(name) for name in fh.keys()}


def write_tensors(path: Path, key: str, tensors: dict[str, torch.Tensor], **metadata: str) -> None:
    """Write ``tensors`` with ``key`` atomically; readable by all (a cache is meant to be shared)."""
    from safetensors.torch import save

    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"key": key, **metadata})
    with atomic_file(path, "wb", permissions=0o644) as fh:
        fh.write(blob)
