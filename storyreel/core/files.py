"""Atomic writes: every file storyreel writes goes through `atomic_write`.

The content is written under a temporary name in the destination folder, then moved into place
with `os.replace`, so readers and a crash at any moment see either the old file or the new one,
never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path, write: Callable[[Path], None], *, durable: bool = False) -> Path:
    """Call `write(temp_path)` for a temp file beside `path` (same suffix), then move it into place.

    `durable` fsyncs the file first (for files that mark a commit, like the index's CURRENT).
    On failure the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sidecar_path(path) -> Path:
    """`clip.mp4` -> `clip.mp4.json`: the JSON sidecar written beside a video output."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_text_atomic(path, text: str, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
