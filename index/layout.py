"""On-disk layout of an index folder, and the moves that keep it crash-safe.

    INDEX_DIR/CURRENT            one line: the name of the published generation (atomically replaced)
    INDEX_DIR/gen-NNNNNN/        a published generation: catalog.duckdb + vectors.faiss, never modified
    INDEX_DIR/staging/           the build's work copy (commits one transaction per video: the resume point)
    INDEX_DIR/build.lock         held (flock) by the one running build

Readers only ever open CURRENT's generation. A build copies that generation's catalog into staging,
commits there, writes the FAISS file, renames staging to a new generation and flips CURRENT with
os.replace. A kill at any moment leaves CURRENT naming a complete generation.

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

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic

CURRENT = "CURRENT"
STAGING = "staging"
CATALOG = "catalog.duckdb"
VECTORS = "vectors.faiss"
GENERATION_NAME = re.compile(r"gen-(\d{6,})")


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
