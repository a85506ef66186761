"""On-disk layout of an index folder, and the moves that keep it crash-safe.

    INDEX_DIR/CURRENT            one line: the name of the published generation (atomically replaced)
    INDEX_DIR/gen-NNNNNN/        a published generation, never modified:
        catalog.duckdb           the catalog without vectors (index/catalog.py)
        frames-SSSSSS.f16        per-frame CLIP vectors of the clips of segment S, float16 (rows, K, dim)
        vectors.faiss            the base vector index (index/vectors.py; newer clips are added on open)
    INDEX_DIR/staging/           the build's work copy (commits one transaction per video: the resume point)
    INDEX_DIR/build.lock         held (flock) by the one running build

Readers only ever open CURRENT's generation. A build copies that generation's catalog into staging
(it holds no vectors: ~30 bytes a clip), appends the new clips' frame vectors to one new segment file
there, hard-links the generation's other files (segments and the base vector index are immutable,
so generations share them and a build writes only what changed), renames staging to a new
generation and flips CURRENT with os.replace. A kill at any moment leaves CURRENT naming a
complete generation; an open reader keeps its files (and mmaps) after a later build unlinks them.

If CURRENT was damaged anyway (edited, emptied, or naming a folder someone deleted), a build first
points it back at the newest complete generation (`repair_current`); nothing deletes a generation
while CURRENT does not name an existing one.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic

CURRENT = "CURRENT"
STAGING = "staging"
CATALOG = "catalog.duckdb"
VECTORS = "vectors.faiss"
GENERATION_NAME = re.compile(r"gen-(\d{6,})")


FRAMES_DTYPE = np.dtype("<f2")  # float16: half the bytes; re-rank order unchanged (tests/test_search.py)


def frames_name(segment: int) -> str:
    return f"frames-{segment:06d}.f16"


class SegmentFile:
    """The append-only frame-vector file a build writes: rows of (K, dim) float16 vectors.

    `append` writes and fsyncs before the catalog transaction that points at the rows commits, so a
    committed row is always on disk. `committed_rows` truncates bytes a killed build appended
    without committing (resume)."""

    def __init__(self, path: Path, segment: int, frames_per_clip: int, dim: int, committed_rows: int = 0):
        self.path, self.segment = Path(path), segment
        self.row_bytes = frames_per_clip * dim * FRAMES_DTYPE.itemsize
        self._fh = open(self.path, "ab")
        self._fh.truncate(committed_rows * self.row_bytes)
        self._fh.seek(0, os.SEEK_END)
        self.rows = committed_rows

    def append(self, frame_vectors: np.ndarray) -> int:
        """Append (n, K, dim) vectors; returns the row number of the first."""
        data = np.ascontiguousarray(frame_vectors, dtype=FRAMES_DTYPE)
        if data.nbytes != len(data) * self.row_bytes:
            raise ValueError(f"frame vectors of shape {data.shape} do not fill rows of {self.row_bytes} bytes")
        first = self.rows
        self._fh.write(data.tobytes())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.rows += len(data)
        return first

    def close(self) -> None:
        self._fh.close()


def read_segment(path: Path, frames_per_clip: int, dim: int) -> np.ndarray:
    """A segment file as a read-only memory map of shape (rows, K, dim) float16 (zero rows: an empty array)."""
    rows = os.path.getsize(path) // (frames_per_clip * dim * FRAMES_DTYPE.itemsize)
    if rows == 0:
        return np.zeros((0, frames_per_clip, dim), FRAMES_DTYPE)
    return np.memmap(path, dtype=FRAMES_DTYPE, mode="r", shape=(rows, frames_per_clip, dim))


def link_into(source_dir: Path, names, target_dir: Path) -> None:
    """Hard-link `names` from source_dir into target_dir (files are immutable once published, so
    generations share them; a link already there from a killed publish is kept)."""
    for name in names:
        target = target_dir / name
        if not target.exists():
            os.link(source_dir / name, target)


def current_generation(index_dir: Path) -> str | None:
    """What CURRENT names (not checked to exist; see `repair_current`), or None if there is no CURRENT."""
    try:
        name = (index_dir / CURRENT).read_text(errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return name or None


def generation_number(name: str | None) -> int:
    """N of a `gen-NNNNNN` name; 0 for None or anything else."""
    match = GENERATION_NAME.fullmatch(name or "")
    return int(match.group(1)) if match else 0


def generations(index_dir: Path) -> list[str]:
    """Names of the generation folders, newest first."""
    names = [p.name for p in index_dir.glob("gen-*") if p.is_dir() and GENERATION_NAME.fullmatch(p.name)]
    return sorted(names, key=generation_number, reverse=True)


def has_files(folder: Path) -> bool:
    """Both index files are there and not empty (whether they read back is index/repair.py's question)."""
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in (CATALOG, VECTORS))


def repair_current(index_dir: Path) -> str | None:
    """Point a CURRENT that names no generation folder at the newest generation with both files (else
    the newest with a catalog; else remove it). Returns a note saying what it did, or None if CURRENT
    was fine or there is no index yet."""
    named = current_generation(index_dir)
    if named is not None and GENERATION_NAME.fullmatch(named) and (index_dir / named).is_dir():
        return None
    found = generations(index_dir)
    if named is None and not found:
        return None  # a new index
    usable = ([g for g in found if has_files(index_dir / g)]
              or [g for g in found if (index_dir / g / CATALOG).is_file()])
    what = f"{CURRENT} named {named!r}, which is not a generation folder" if named else \
        f"{CURRENT} was missing or empty"
    if not usable:
        (index_dir / CURRENT).unlink(missing_ok=True)
        return f"{what}, and no generation is left: building a new index"
    write_text_atomic(index_dir / CURRENT, f"{usable[0]}\n", durable=True)
    return f"{what}; repaired it to the newest complete generation, {usable[0]}"


def next_generation(index_dir: Path) -> str:
    taken = [generation_number(name) for name in generations(index_dir)]
    current = generation_number(current_generation(index_dir))
    return f"gen-{max([current, *taken]) + 1:06d}"


def publish(index_dir: Path, staging: Path) -> str:
    """Turn the finished staging folder into the current generation; remove older generations."""
    name = next_generation(index_dir)
    os.rename(staging, index_dir / name)
    write_text_atomic(index_dir / CURRENT, f"{name}\n", durable=True)
    remove_unpublished(index_dir, keep_staging=True)
    return name


def remove_unpublished(index_dir: Path, keep_staging: bool) -> None:
    """Delete generations other than CURRENT's (old ones, or orphans of a build killed mid-publish);
    none at all while CURRENT does not name an existing generation (`repair_current` fixes that first)."""
    current = current_generation(index_dir)
    if current is not None and (index_dir / current).is_dir():
        for path in index_dir.glob("gen-*"):
            if path.is_dir() and path.name != current:
                shutil.rmtree(path, ignore_errors=True)
    if not keep_staging:
        shutil.rmtree(index_dir / STAGING, ignore_errors=True)


@contextmanager
def build_lock(index_dir: Path):
    """One build per index folder at a time (DuckDB allows one writer process anyway)."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--index {index_dir} is a file, or inside one; give a folder path") from None
    except PermissionError:
        raise UserError(f"--index {index_dir}: cannot create the folder (permission denied)") from None
    with open(index_dir / "build.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another build is running on {index_dir}; wait for it to finish") from None
        yield
