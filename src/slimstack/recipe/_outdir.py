"""The output folder of ``slimstack run`` / ``optimize``: locked for the run, and only our own files overwritten.

``OUT/state.json`` records (under ``"written"``) every path slimstack wrote in OUT, relative to
it. A path is recorded *before* it is written, so a run killed half-way never leaves a file of its
own that the next run would take for a stranger's. What slimstack never overwrites or deletes:

- a ``report.json``, ``report.html``, ``state.json``, ``best``/``best.json``/``study.db`` or any
  entry under ``artifacts/`` that is not recorded in a valid ``state.json`` (the run refuses,
  naming the path and the fix: move it, ``--force``, or another ``-o`` folder);
- any other file in OUT: slimstack writes only the paths above, even with ``--force``.

The folder is locked (``flock`` on ``OUT/.slimstack.lock``) for the whole run, so a second run on
the same OUT fails at once, naming the process that holds it. The lock goes with the process,
also when it is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .._utils import atomic_file
from ..errors import ConfigError

__all__ = ["OutDir", "STATE", "LOCK", "FORMAT"]

STATE = "state.json"
LOCK = ".slimstack.lock"
FORMAT = "slimstack-run/1"
_REPORTS = ("report.json", "report.html")


def _mkdir_private(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 on the folder itself, whatever the umask."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, 0o700)


def _leftover(name: str) -> bool:
    """A temporary folder ``ss.save`` leaves beside one of our artifacts when killed (``.01-prune.tmp-*``);
    the next save of that artifact cleans it, so it is neither a stranger nor ours to delete."""
    return re.match(r"^\.\d{2}-[a-z]+\.(tmp|old)-", name) is not None


class OutDir:
    """``with OutDir(out, force=False) as od:`` checks, locks and hands out OUT's paths."""

    def __init__(self, out: str | Path, *, force: bool = False, command: str = "run"):
        self.out, self.force, self.command = Path(out), force, command
        self._lock_fh: Any = None
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ entering and leaving
    def __enter__(self) -> OutDir:
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"-o {str(out)!r} is a file, not a folder; pass a folder for the run's outputs "
                              "(it is created if missing)")
        try:
            _mkdir_private(out)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {str(out)!r} ({exc.strerror or exc}); "
                              "choose another -o folder") from None
        self._lock()
        try:
            self.state = self._read_state()
            self._check_strangers()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unlock()

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks; runs are not protected from each other
            return
        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fh = os.fdopen(fd, "r+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConfigError(f"{str(self.out)!r} is in use by another slimstack run ({holder}); wait for it to "
                              "finish or pass another -o folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, slimstack {self.command}")
        fh.flush()
        self._lock_fh = fh

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing releases the flock
            self._lock_fh = None

    # ------------------------------------------------------------------ state and ownership
    def _read_state(self) -> dict[str, Any]:
        path = self.out / STATE
        if not path.exists():
            return {"format": FORMAT, "written": [], "steps": []}
        try:
            state = json.loads(path.read_bytes().decode("utf-8"))
            ok = isinstance(state, dict) and state.get("format") == FORMAT and isinstance(state.get("written"), list) \
                and isinstance(state.get("steps"), list)
        except (ValueError, UnicodeDecodeError):
            ok = False
        if ok:
            return state
        if self.force:
            return {"format": FORMAT, "written": [], "steps": []}
        raise ConfigError(f"{str(path)!r} is not a state file of this slimstack version (corrupt, or written by "
                          "something else), so nothing in that folder is known to be slimstack's; move it away, "
                          "pass --force to overwrite slimstack's own files there, or choose another -o folder")

    def owns(self, rel: str) -> bool:
        return rel in self.state["written"]

    def _check_strangers(self) -> None:
        if self.force:
            return
        candidates = [*_REPORTS, *(("best", "best.json", "study.db") if self.command == "optimize" else ())]
        art = self.out / "artifacts"
        if art.is_dir():
            candidates += [f"artifacts/{p.name}" for p in sorted(art.iterdir()) if not _leftover(p.name)]
        for rel in candidates:
            if os.path.lexists(self.out / rel) and not self.owns(rel):
                raise ConfigError(
                    f"{str(self.out / rel)!r} was not written by slimstack (no record of it in {STATE}); slimstack "
                    f"{self.command} never overwrites files it did not write: move it away, pass --force to let "
                    "slimstack overwrite its own output paths there, or choose another -o folder")

    def claim(self, rel: str) -> Path:
        """Record ``rel`` as ours (persisted first), clear what is there, and return its full path."""
        path = self.out / rel
        if os.path.lexists(path) and not (self.owns(rel) or self.force):
            raise ConfigError(f"{str(path)!r} appeared during the run and was not written by slimstack; move it "
                              "away and run again")
        if not self.owns(rel):
            if os.path.lexists(path):  # --force: the user let us replace what is there
                self.state["written"].append(rel)
                self.remove(rel)
            else:
                self.state["written"].append(rel)
            self.save_state()
        if rel.startswith("artifacts/"):
            _mkdir_private(self.out / "artifacts")
        return path

    def remove(self, rel: str) -> None:
        """Delete one of our own paths (a stale report or artifact)."""
        path = self.out / rel
        if not (self.owns(rel) or self.force):
            return
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()

    def drop_reports(self) -> None:
        """Remove the previous report before anything changes, so no report describes other artifacts."""
        for rel in _REPORTS:
            self.remove(rel)

    def save_state(self) -> None:
        with atomic_file(self.out / STATE) as fh:
            json.dump(self.state, fh, indent=2)
        with contextlib.suppress(OSError):
            os.chmod(self.out / STATE, 0o600)
