"""Atomic writes: every file storyreel writes goes through `atomic_write`.

The content is written under a temporary name in the destination folder, then moved into place
with `os.replace`, so readers and a crash at any moment see either the old file or the new one,
never a half-written one. The temporary name carries the writer's process id, so a later write to
the same folder removes what a killed writer left behind (`remove_stale_temps`).

`check_output_path` is the one check every command runs on its output paths before slow work.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from storyreel.core.errors import UserError

# Temp names are ".NAME.srtmp<pid>.<random><suffix>"; the mark keeps other programs' dot files safe.
TEMP_MARK = "srtmp"
_TEMP_NAME = re.compile(rf"^\..+\.{TEMP_MARK}(\d+)\.[^/]*$")


def atomic_write(path, write: Callable[[Path], None], *, durable: bool = False) -> Path:
    """Call `write(temp_path)` for a temp file beside `path` (same suffix), then move it into place.

    `durable` fsyncs the file first (for files that mark a commit, like the index's CURRENT).
    On failure the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARK}{os.getpid()}.", suffix=path.suffix, dir=path.parent)
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


def temp_dir(path) -> Path:
    """A temporary folder beside `path`, named so `remove_stale_temps` can clean it up after a crash."""
    path = Path(path)
    remove_stale_temps(path.parent)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMP_MARK}{os.getpid()}.", dir=path.parent))


def remove_stale_temps(folder) -> int:
    """Delete temp files/folders in `folder` left by writers that no longer run (killed mid-write).

    A temp whose process id is alive is another writer's, still working, and stays. Returns the count.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or _process_alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            pass  # another run cleaned it meanwhile, or it is not ours to delete
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but belongs to someone else (or cannot tell): leave its files alone
    return True


def check_output_path(path, flag: str, *, folder: bool = False, create_parents: bool = False) -> Path:
    """Fail before slow work if `path` (given as `flag`, e.g. "--out") cannot be written.

    A file output must not be an existing folder; a folder output (`folder=True`) must not be an
    existing file. Its parent must be a folder (or, with `create_parents`, creatable: no file on the
    way) that we can write into.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    if not folder and path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():  # the nearest existing ancestor decides (parents created later)
        if not create_parents:
            raise UserError(f"{flag} {path}: folder {path.parent} does not exist; create it or choose another path")
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: folder {parent} is not writable; choose another path")
    if path.exists() and not os.access(path, os.W_OK) and not path.is_dir():
        raise UserError(f"{flag} {path} is not writable; choose another path")
    return path
