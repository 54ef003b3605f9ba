"""Writing a file atomically: a temp file beside the target, fsync, rename (numpy- and torch-free)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so temp files left by a killed writer stay
    fcntl = None

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)``, then rename the temp file over ``path``; on any error remove it.

    The finished file gets the mode of any new file under the current umask: the temp file is
    created with ``os.open(..., 0o666)`` and that mode is restored after ``write`` (``mkstemp`` and
    safetensors' ``save_file`` both leave 0600).  Readers see the old file or the new one, never a
    partial one.  The writer holds a lock on its temp file until the rename, so a temp file of the
    same target that nobody holds was left by a writer that died (a ``distill`` killed while it
    wrote ``student.tclip``): each successful write removes those (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when this process closes it or dies
        mode = os.stat(tmp).st_mode & 0o777  # 0o666 less the umask, read without changing it
        write(str(tmp))
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        os.close(fd)
        raise
    try:
        remove_stale_temps(path)
    finally:
        os.close(fd)
    return path


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of ``path`` (``<name>.<8 hex digits>.tmp``) that no living writer holds."""
    path = Path(path)
    if fcntl is None or not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(path.name) + r"\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))
    removed = []
    for candidate in path.parent.iterdir():
        if not pattern.fullmatch(candidate.name):
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a writer holds it: in use
            continue
        else:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        finally:
            os.close(fd)
    return removed
