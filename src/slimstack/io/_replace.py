"""Writing a saved model's folder: never over something slimstack did not write, replaced atomically.

``ss.save(model, path)`` writes into ``.NAME.tmp-PID-XXXX`` beside ``path`` and then swaps it with
the old folder in one ``renameat2(RENAME_EXCHANGE)`` call (Linux), so at every instant ``path``
holds either the old model or the new one. Where the exchange is not available it falls back to two
renames, and a save killed between them is undone by the next save or load of that path.
Leftover temporary folders of dead processes are removed by the next save to the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelFileError

__all__ = ["replace_dir", "check_target", "recover", "written_files"]

_TMP, _OLD = ".tmp-", ".old-"


def _fix(path: Path) -> str:
    return f"choose another path, or move {str(path)!r} away yourself if you no longer need it"


def check_target(target: Path, manifest: str) -> None:
    """Refuse to replace anything at ``target`` that ss.save did not write (a file, a user's folder)."""
    cwd = Path.cwd().resolve()
    if target.name in ("", ".", "..") or target.resolve() == cwd or cwd.is_relative_to(target.resolve()):
        raise ModelFileError(f"ss.save would replace {str(target)!r}, the current folder or one above it; "
                             "save into a new subfolder, e.g. ss.save(model, 'out/model')")
    if target.is_symlink():
        raise ModelFileError(f"{str(target)!r} is a symlink; ss.save does not replace links, {_fix(target)}")
    if not target.exists():
        return
    if not target.is_dir():
        raise ModelFileError(f"{str(target)!r} is a file that ss.save did not write, so it is not replaced; "
                             f"{_fix(target)}")
    if not any(target.iterdir()):
        return  # an empty folder
    entries = [p for p in target.rglob("*") if not p.is_dir()]
    file = target / manifest
    try:
        recorded = json.loads(file.read_text()) if file.is_file() else None
    except (ValueError, OSError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict) or "format" not in recorded:
        raise ModelFileError(f"{str(target)!r} is a folder that ss.save did not write (no valid {manifest}), so "
                             f"it is not replaced; {_fix(target)}")
    listed = recorded.get("files")
    if isinstance(listed, list):
        extra = sorted(str(p.relative_to(target)) for p in entries
                       if str(p.relative_to(target)) not in set(listed) | {manifest})
        if extra:
            raise ModelFileError(f"{str(target)!r} holds files ss.save did not write ({', '.join(extra[:5])}), so it "
                                 f"is not replaced; {_fix(target)}")


def written_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path, kind: str) -> list[Path]:
    """Temporary folders of ``target`` left by dead processes (``.NAME.tmp-PID-XXXX``)."""
    out = []
    for p in target.parent.glob(f".{target.name}{kind}*"):
        pid = p.name[len(f".{target.name}{kind}"):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            out.append(p)
    return out


def recover(target: Path) -> None:
    """Undo a save killed between its two fallback renames, and drop dead saves' temporary folders."""
    if not target.parent.is_dir():
        return
    olds = _leftovers(target, _OLD)
    if olds and not target.exists():
        os.replace(max(olds, key=lambda p: p.stat().st_mtime), target)
    for p in _leftovers(target, _OLD) + _leftovers(target, _TMP):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _private(directory: Path) -> None:
    """Folders 0700 whatever the umask: saved weights are the user's data."""
    for p in [directory, *directory.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o700)


@contextlib.contextmanager
def replace_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; when the block succeeds it takes ``target``'s place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP}{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        _private(tmp)
        if not target.exists():
            os.replace(tmp, target)
        elif _exchange(tmp, target):
            pass  # tmp now holds the old model, removed below
        else:
            old = target.with_name(f".{target.name}{_OLD}{os.getpid()}-{tmp.name[-8:]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
