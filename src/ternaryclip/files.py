"""Writing a file atomically: a temp file beside the target, fsync, rename (numpy- and torch-free)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)``, then rename the temp file over ``path``; on any error remove it.

    The finished file gets the mode of any new file under the current umask: the temp file is
    created with ``os.open(..., 0o666)`` and that mode is restored after ``write`` (``mkstemp`` and
    safetensors' ``save_file`` both leave 0600).  Readers see the old file or the new one, never a
    partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            mode = os.stat(tmp).st_mode & 0o777  # 0o666 less the umask, read without changing it
            break
        except FileExistsError:
            continue
    try:
        write(str(tmp))
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
