"""Reader stage: find video files and tell which ones are new, changed, unchanged or removed.

Any name the OS allows is found. On Linux a name need not be UTF-8; Python hands such names over as
`str` with lone surrogates (PEP 383), which DuckDB cannot store, so the catalog keeps them through
`db_path` / `os_path` (lossless, see there). An entry that cannot be looked up, stat'ed or read
(dangling or looping symlink, not a regular file, no permission, deleted while we look) becomes a
`FileStat` with an `error`, which the build records in the errors table instead of stopping.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from storyreel.core.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
NON_UTF8_PREFIX = "fsbytes:"  # catalog paths are absolute ("/..."), so this prefix cannot be a real path


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, as the OS names it (lone surrogates for non-UTF-8 bytes)
    size: int
    mtime_ns: int
    error: str | None = None  # why the entry cannot be read (it goes to the errors table)


@dataclass
class ScanDiff:
    """Result of comparing the folder with the catalog. `todo` is sorted (ids are assigned in this order)."""

    new: list[FileStat] = field(default_factory=list)
    changed: list[FileStat] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    touched: list[tuple[FileStat, str]] = field(default_factory=list)  # same content, new mtime
    removed: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[FileStat]:
        return sorted(self.new + self.changed, key=lambda f: f.path)


def db_path(path: str) -> str:
    """The catalog's text for an OS path: the path itself when it is valid UTF-8, else the prefix and
    the hex of its bytes (lossless; `os_path` reverses it)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return NON_UTF8_PREFIX + os.fsencode(path).hex()


def os_path(text: str) -> str:
    """The OS path for a catalog text written by `db_path`."""
    if text.startswith(NON_UTF8_PREFIX):
        return os.fsdecode(bytes.fromhex(text[len(NON_UTF8_PREFIX):]))
    return text


def display_path(path: str) -> str:
    """A path for messages and text output: non-UTF-8 bytes shown as \\xNN (printable on any terminal)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def os_error_reason(err: OSError) -> str:
    """A short reason for the errors table, e.g. 'No such file or directory'."""
    return err.strerror or type(err).__name__


def entry_error(err: OSError) -> str:
    """The errors-table reason for an OSError met while reading a listed file."""
    if isinstance(err, FileNotFoundError):
        return f"disappeared during the build ({os_error_reason(err)})"
    if isinstance(err, PermissionError):
        return f"cannot read the file ({os_error_reason(err)}); check its permissions"
    return f"cannot read the file ({os_error_reason(err)})"


def stat_entry(path: str) -> FileStat:
    """FileStat of one listed entry; `error` says why it cannot be indexed (never raises OSError)."""
    try:
        st = os.stat(path)  # follows symlinks: a link to a video is indexed
    except OSError as err:
        try:
            link = os.lstat(path)
        except OSError:
            return FileStat(path, 0, 0, f"disappeared while the folder was scanned ({os_error_reason(err)})")
        if stat.S_ISLNK(link.st_mode):
            what = "symlink loop" if err.errno == errno.ELOOP else "dangling symlink"
            try:
                target = display_path(os.readlink(path))
            except OSError:  # replaced since the lstat
                target = "?"
            return FileStat(path, link.st_size, link.st_mtime_ns, f"{what} (points to {target})")
        return FileStat(path, link.st_size, link.st_mtime_ns, f"cannot stat ({os_error_reason(err)})")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device or other special file")
        return FileStat(path, 0, st.st_mtime_ns, f"not a regular file ({kind})")
    return FileStat(path, st.st_size, st.st_mtime_ns)


def find_videos(video_dir: str | Path) -> list[FileStat]:
    """Every video file under `video_dir` (recursive, extension case-insensitive), sorted by path.

    Entries that cannot be read are returned too, with `error` set (see `stat_entry`), and so is a
    subfolder that cannot be listed. Symlinked folders are not followed, so a link cycle cannot make
    the walk endless.
    """
    found = []

    def unlistable(err: OSError) -> None:  # a subfolder we may not read is listed, not skipped silently
        if err.filename and os.path.abspath(err.filename) != os.path.abspath(video_dir):
            found.append(FileStat(err.filename, 0, 0, f"cannot list the folder ({os_error_reason(err)})"))

    for root, dirs, files in os.walk(os.path.abspath(video_dir), onerror=unlistable):
        dirs.sort()
        for name in files:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                found.append(stat_entry(os.path.join(root, name)))
    return sorted(found, key=lambda f: f.path)


def fingerprint(path: str) -> str:
    """Content fingerprint: BLAKE2b of the whole file (only computed when size or mtime changed).
    Raises OSError when the file cannot be read."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def diff_against_catalog(files: list[FileStat], known: dict[str, tuple[int, int, str]]) -> ScanDiff:
    """Compare the folder with `known` = {path: (size, mtime_ns, fingerprint)} from the catalog.

    Same size and mtime: unchanged without reading the file. Otherwise the fingerprint decides, so a
    file that was only touched (or copied back) keeps its clips and ids. A file that cannot be read
    now counts as changed: the build then records why.
    """
    diff = ScanDiff()
    present = set()
    for f in files:
        present.add(f.path)
        if f.path not in known:
            diff.new.append(f)
            continue
        size, mtime_ns, old_print = known[f.path]
        if (size, mtime_ns) == (f.size, f.mtime_ns):
            diff.unchanged.append(f.path)
        elif f.error is None and size == f.size and old_print and _fingerprint_or_none(f.path) == old_print:
            diff.touched.append((f, old_print))
        else:
            diff.changed.append(f)
    diff.removed = sorted(p for p in known if p not in present)
    return diff


def _fingerprint_or_none(path: str) -> str | None:
    try:
        return fingerprint(path)
    except OSError:
        return None


def check_removals(diff: ScanDiff, known: int, video_dir, index_dir) -> None:
    """Stop a build that would drop more than half of the `known` files of an index, or all of them:
    most likely VIDEO_DIR is the wrong folder or not mounted, and dropped clip ids break stories."""
    removed = len(diff.removed)
    if known and (removed == known or 2 * removed > known):
        raise UserError(f"{display_path(str(video_dir))} lacks {removed} of the {known} files in the index "
                        f"{display_path(str(index_dir))} (e.g. {display_path(diff.removed[0])}); this build would "
                        f"drop them and their clip ids. Check VIDEO_DIR, or pass --allow-removals to drop them")
