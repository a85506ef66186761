"""On-disk layout of an index folder, and the moves that keep it crash-safe.

    INDEX_DIR/CURRENT            one line: the name of the published generation (atomically replaced)
    INDEX_DIR/gen-NNNNNN/        a published generation: catalog.duckdb + vectors.faiss, never modified
    INDEX_DIR/staging/           the build's work copy (commits one transaction per video: the resume point)
    INDEX_DIR/build.lock         held (flock) by the one running build

Readers only ever open CURRENT's generation. A build copies that generation's catalog into staging,
commits there, writes the FAISS file, renames staging to a new generation and flips CURRENT with
os.replace. A kill at any moment leaves CURRENT naming a complete generation.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic

CURRENT = "CURRENT"
STAGING = "staging"
CATALOG = "catalog.duckdb"
VECTORS = "vectors.faiss"


def current_generation(index_dir: Path) -> str | None:
    """Name of the published generation, or None if the folder has never been published."""
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def generation_number(name: str | None) -> int:
    return int(name.split("-")[1]) if name else 0


def next_generation(index_dir: Path) -> str:
    taken = [generation_number(p.name) for p in index_dir.glob("gen-*") if p.is_dir()]
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
    """Delete generations other than CURRENT's (old ones, or orphans of a build killed mid-publish)."""
    current = current_generation(index_dir)
    for path in index_dir.glob("gen-*"):
        if path.is_dir() and path.name != current:
            shutil.rmtree(path, ignore_errors=True)
    if not keep_staging:
        shutil.rmtree(index_dir / STAGING, ignore_errors=True)


@contextmanager
def build_lock(index_dir: Path):
    """One build per index folder at a time (DuckDB allows one writer process anyway)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / "build.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another build is running on {index_dir}; wait for it to finish") from None
        yield
