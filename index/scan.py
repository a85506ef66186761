"""Reader stage: find video files and tell which ones are new, changed, unchanged or removed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, as indexed
    size: int
    mtime_ns: int


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


def find_videos(video_dir: str | Path) -> list[FileStat]:
    """Every video file under `video_dir` (recursive, extension case-insensitive), sorted by path."""
    found = []
    for root, dirs, files in os.walk(os.path.abspath(video_dir)):
        dirs.sort()
        for name in files:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                path = os.path.join(root, name)
                st = os.stat(path)
                found.append(FileStat(path, st.st_size, st.st_mtime_ns))
    return sorted(found, key=lambda f: f.path)


def fingerprint(path: str) -> str:
    """Content fingerprint: BLAKE2b of the whole file (only computed when size or mtime changed)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def diff_against_catalog(files: list[FileStat], known: dict[str, tuple[int, int, str]]) -> ScanDiff:
    """Compare the folder with `known` = {path: (size, mtime_ns, fingerprint)} from the catalog.

    Same size and mtime: unchanged without reading the file. Otherwise the fingerprint decides, so a
    file that was only touched (or copied back) keeps its clips and ids.
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
        elif size == f.size and fingerprint(f.path) == old_print:
            diff.touched.append((f, old_print))
        else:
            diff.changed.append(f)
    diff.removed = sorted(p for p in known if p not in present)
    return diff
