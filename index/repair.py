"""Damaged index files: find them, say so in one line, and rebuild them (`index build --repair`).

A published generation (index/layout.py) holds a catalog, frame-vector segment files and the base
vector index. Any may be damaged behind the index's back (a full disk, a copy cut short, a stray
`truncate`):

- `vectors.faiss` missing, empty, unreadable, or not holding the vectors the catalog says it holds:
  every clip's vector is the mean of its frame vectors, so `--repair` writes the FAISS file again from
  the segment files (index/writer.py `_segment_vectors`), losing nothing;
- `catalog.duckdb` missing, empty or unreadable, or a `frames-*.f16` segment missing or short: those
  rows cannot be recovered, so `--repair` starts a new catalog and decodes every video again. New
  clip ids continue after the highest id the old vectors file still names, so an old id pinned in a
  story never silently points at another clip.

Every command that opens the index reports the damage in one line naming the file and the repair.
"""

from __future__ import annotations

from pathlib import Path

from storyreel.index import layout

REQUIRED_META = ("schema_version", "model_id", "dim", "settings", "next_clip_id")


def damage_message(index_dir: Path, generation: str, file: str, problem: str) -> str:
    return (f"index {index_dir}: {generation}/{file} is damaged ({problem}); rebuild it with "
            f"`storyreel index build VIDEO_DIR --index {index_dir} --repair`")


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]


def file_problem(path: Path) -> str | None:
    """'missing' or 'empty file', else None."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty file"
    return None


def catalog_problem(path: Path) -> str | None:
    """Why the catalog at `path` cannot be used, or None. Reads every table (DuckDB checksums each
    block it reads, so a cut-off or overwritten file fails here rather than halfway through a build)."""
    import duckdb

    if problem := file_problem(path):
        return problem
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        return f"cannot be opened: {first_line(err)}"
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        missing = [key for key in REQUIRED_META if key not in meta]
        if missing:
            return f"meta lacks {', '.join(missing)}"
        for sql in ("SELECT count(*), sum(segment), sum(row) FROM clips", "SELECT count(*) FROM removed",
                    "SELECT count(*) FROM videos", "SELECT count(*) FROM errors"):
            con.execute(sql).fetchall()
    except duckdb.Error as err:
        return f"cannot be read: {first_line(err)}"
    finally:
        con.close()
    return None


def read_vectors(path: Path):
    """(FAISS index, None) or (None, why it cannot be read)."""
    import faiss

    if problem := file_problem(path):
        return None, problem
    try:
        return faiss.read_index(str(path)), None
    except RuntimeError as err:  # FAISS reports every read failure as RuntimeError
        return None, f"cannot be read: {first_line(err).split(': ')[-1]}"


def segment_rows(catalog_path: Path) -> tuple[dict[int, int], int, int, int]:
    """({segment: rows the catalog points into}, frames per clip, dim, vectors in the base index) of a
    readable catalog."""
    import json

    import duckdb

    con = duckdb.connect(str(catalog_path), read_only=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        rows = dict(con.execute("SELECT segment, max(row) + 1 FROM clips GROUP BY segment").fetchall())
        return ({int(s): int(n) for s, n in rows.items()}, int(json.loads(meta["settings"])["frames_per_clip"]),
                int(meta["dim"]), int(meta.get("base_count", -1)))
    finally:
        con.close()


def check_generation(index_dir: Path, generation: str) -> dict[str, str]:
    """{file name: problem} for the damaged files of a published generation (empty: healthy)."""
    folder = index_dir / generation
    problems = {}
    catalog_bad = catalog_problem(folder / layout.CATALOG)
    if catalog_bad:
        problems[layout.CATALOG] = catalog_bad
    else:
        rows, k, dim, base_count = segment_rows(folder / layout.CATALOG)
        for segment, needed in rows.items():
            name = layout.frames_name(segment)
            if problem := file_problem(folder / name):
                problems[name] = problem
            elif (have := (folder / name).stat().st_size // (k * dim * layout.FRAMES_DTYPE.itemsize)) < needed:
                problems[name] = f"holds {have} clips' frame vectors, the catalog points at {needed}"
    vectors, vectors_bad = read_vectors(folder / layout.VECTORS)
    if vectors_bad:
        problems[layout.VECTORS] = vectors_bad
    elif not catalog_bad and vectors.ntotal != base_count:
        problems[layout.VECTORS] = f"holds {vectors.ntotal} vectors, the catalog says {base_count}"
    return problems


def next_id_after_vectors(index_dir: Path, generation: str) -> int:
    """One past the highest clip id the generation's vectors file names (0 if it cannot be read)."""
    from storyreel.index.reader import vector_ids

    vectors, problem = read_vectors(index_dir / generation / layout.VECTORS)
    if problem:
        return 0
    try:
        ids = vector_ids(vectors)
    except RuntimeError:
        return 0
    return int(ids.max()) + 1 if len(ids) else 0
