"""A render owns its output folder: it claims it (never an unrelated folder) and locks it while writing.

    claim_output_folder(out_dir, force=False)   # new, empty or an earlier render's; else a UserError
    with render_lock(out_dir):                   # a second render into out_dir stops with one line
        ...
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from storyreel.core.errors import UserError
from storyreel.core.files import check_output_path, write_text_atomic
from storyreel.story.manifest import MANIFEST_FILE, MANIFEST_VERSION, read_manifest

MARKER = ".storyreel-render"  # in OUT_DIR: this folder is a storyreel render (written before anything else)
LOCK = ".storyreel-render.lock"  # flock'ed while a render writes to OUT_DIR


def claim_output_folder(out_dir: Path, *, force: bool = False) -> None:
    """Make `out_dir` a render folder: new, empty, or already one (its marker file, or an earlier
    storyreel manifest). Any other folder is refused unless `force`, so no unrelated file is overwritten."""
    check_output_path(out_dir, "--out", folder=True, create_parents=True)
    if out_dir.is_dir() and not (out_dir / MARKER).is_file():
        others = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
        if others and not force and not _is_earlier_render(out_dir):
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise UserError(f"--out {out_dir} is a folder with other files in it ({shown}) and not a storyreel "
                            "render; choose a new or empty folder, or pass --force to render into it")
    if (out_dir / "plots").exists() and not (out_dir / "plots").is_dir():
        raise UserError(f"--out {out_dir}: {out_dir / 'plots'} is a file; move it away or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / MARKER).is_file():
            write_text_atomic(out_dir / MARKER, json.dumps({"kind": "storyreel-render", "version": MANIFEST_VERSION})
                              + "\n")
    except OSError as err:
        raise UserError(f"--out {out_dir}: cannot write there ({err.strerror or err})") from None


def _is_earlier_render(out_dir: Path) -> bool:
    """A render folder written before renders left a marker: its manifest is a storyreel one."""
    try:
        return read_manifest(out_dir / MANIFEST_FILE) is not None and (out_dir / "plots").is_dir()
    except UserError:
        return False


@contextlib.contextmanager
def render_lock(out_dir: Path):
    """Hold OUT_DIR's lock while rendering: a second render into the same folder stops with one line.

    An flock dies with its process, so a killed render never leaves a stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: render without the lock
        yield
        return
    fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise UserError(f"--out {out_dir}: another storyreel render is writing there"
                            f"{f' (process {holder})' if holder else ''}; wait for it to finish or choose "
                            "another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
