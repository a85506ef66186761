"""Read API: `open_index(index_dir)` → `Index`, a read-only view of the last committed generation.

`ClipIndex` is the part of that API the other stages read (search, depth, render, training); anything
that satisfies it can stand in for an opened index (tests use `tests/fake_index.py MemoryIndex`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from storyreel.core.errors import UserError
from storyreel.index import layout, repair
from storyreel.index.catalog import CLIP_ROW_SQL, SCHEMA_VERSION, ClipFilter, ClipRow, clip_row, read_meta
from storyreel.index.scan import os_path
from storyreel.index.vectors import apply_changes, decode_offset, is_scan, search, search_among


@runtime_checkable
class ClipIndex(Protocol):
    """What search, depth, render and training read from an opened index. `Index` is the real one;
    tests/test_index_interface.py holds `Index` and the tests' in-memory fake to it, signatures included."""

    path: Path
    model_id: str  # the CLIP model the vectors come from; queries must use the same one
    dim: int
    vector_index: Any  # the FAISS index (search reads `.ntotal`)

    def clips(self) -> list[ClipRow]: ...

    def clip_ids(self) -> set[int]: ...

    def clips_by_id(self, clip_ids) -> dict[int, ClipRow]: ...

    def clip(self, clip_id: int) -> ClipRow: ...

    def read_frames(self, clip_id: int, indices=None) -> np.ndarray: ...

    def frame_vectors(self, clip_ids) -> dict[int, np.ndarray]: ...

    def search_vectors(self, query: np.ndarray, n: int, where: ClipFilter | None = None
                       ) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class Index:
    """One published index generation: DuckDB catalog (read-only), the base FAISS index brought up to
    date in memory (clips newer than it added, removed ones dropped; a scan index instead scores the
    newer clips beside it, `added`, and skips the removed ones, `tombstones`: index/vectors.py
    `plan_update`), and the float16 per-frame vectors memory-mapped from their segment files."""

    def __init__(self, index_dir: Path, generation: str):
        import duckdb

        folder = index_dir / generation
        self.path = index_dir
        self.generation = generation
        # Every file is opened now: a later build may delete this generation, and open files survive that.
        # Damaged files get one line naming them and the repair (index/repair.py).
        if problem := repair.file_problem(folder / layout.CATALOG):
            raise UserError(repair.damage_message(index_dir, generation, layout.CATALOG, problem))
        try:
            self._con = duckdb.connect(str(folder / layout.CATALOG), read_only=True)
            meta = read_meta(self._con)
            missing = [key for key in repair.REQUIRED_META if key not in meta]
            if missing:
                raise UserError(repair.damage_message(index_dir, generation, layout.CATALOG,
                                                      f"meta lacks {', '.join(missing)}"))
        except duckdb.Error as err:
            raise UserError(repair.damage_message(index_dir, generation, layout.CATALOG,
                                                  repair.first_line(err))) from None
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            self._con.close()
            raise UserError(f"index {index_dir} was written by an older storyreel (catalog schema "
                            f"{meta.get('schema_version')}); rebuild it into a new folder with `storyreel index build`")
        self.meta = meta
        self.model_id: str = meta["model_id"]
        self.dim: int = int(meta["dim"])
        self.index_type: str = meta["index_type"]
        self.settings: dict = json.loads(meta["settings"])
        k = int(self.settings["frames_per_clip"])
        segments = [s for (s,) in self._con.execute("SELECT DISTINCT segment FROM clips").fetchall()]
        for name in [layout.frames_name(s) for s in segments]:
            if problem := repair.file_problem(folder / name):
                self._con.close()
                raise UserError(repair.damage_message(index_dir, generation, name, problem))
        self._segments = {s: layout.read_segment(folder / layout.frames_name(s), k, self.dim) for s in segments}
        vectors, problem = repair.read_vectors(folder / layout.VECTORS)
        if problem:
            self._con.close()
            raise UserError(repair.damage_message(index_dir, generation, layout.VECTORS, problem))
        self.vector_index = vectors
        newer = self._con.execute("SELECT clip_id FROM clips WHERE clip_id >= ? ORDER BY clip_id",
                                  [int(meta["base_next_clip_id"])]).fetchnumpy()["clip_id"]
        newer = np.asarray(newer, np.int64)
        removed = np.asarray(self._con.execute("SELECT clip_id FROM removed").fetchnumpy()["clip_id"], np.int64)
        # Clips newer than the index file: a scan index scores them beside it (`added`); others take them in.
        self.tombstones, self.added = np.zeros(0, np.int64), (newer, self.clip_vectors(newer))
        if is_scan(self.vector_index):
            self.tombstones = np.unique(removed)
        elif len(newer) or len(removed):
            self.tombstones = apply_changes(self.vector_index, *self.added, removed)
            self.added = (newer[:0], self.added[1][:0])
        self.query_offset = decode_offset(meta.get("query_offset", ""), self.vector_index, self.tombstones,
                                          self.added)

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- clips ------------------------------------------------------------------------------------

    def clips(self) -> list[ClipRow]:
        return [clip_row(r) for r in self._con.execute(CLIP_ROW_SQL + " ORDER BY c.clip_id").fetchall()]

    def clip_ids(self) -> set[int]:
        return {int(r[0]) for r in self._con.execute("SELECT clip_id FROM clips").fetchall()}

    def clips_by_id(self, clip_ids) -> dict[int, ClipRow]:
        """{clip_id: ClipRow} for the ids that are in the index (one query, for many candidates)."""
        ids = [int(c) for c in clip_ids]
        if not ids:
            return {}
        rows = self._con.execute(CLIP_ROW_SQL + " WHERE c.clip_id IN (SELECT unnest(?))", [ids]).fetchall()
        return {row.clip_id: row for row in map(clip_row, rows)}

    def clip(self, clip_id: int) -> ClipRow:
        rows = self._con.execute(CLIP_ROW_SQL + " WHERE c.clip_id = ?", [int(clip_id)]).fetchall()
        if not rows:
            raise UserError(f"clip id {clip_id} is not in the index {self.path}")
        return clip_row(rows[0])

    def read_frames(self, clip_id: int, indices=None) -> np.ndarray:
        """uint8 (F,H,W,3) frames of a clip at source resolution; `indices` relative to the clip start."""
        from storyreel.core.video import BadVideo, read_frames

        row = self.clip(clip_id)
        rel = frame_offsets(row, indices)
        order = np.argsort(rel, kind="stable")  # decode ascending, return in the order asked
        try:
            frames = read_frames(row.video, rel[order] + row.start_frame)
        except (BadVideo, FileNotFoundError) as err:
            raise UserError(f"cannot read clip {clip_id} from {row.video} ({err}); "
                            f"rerun `storyreel index build` to refresh the index {self.path}") from None
        out = np.empty_like(frames)
        out[order] = frames
        return out

    def frame_vectors(self, clip_ids) -> dict[int, np.ndarray]:
        """{clip_id: float32 (K, dim)} per-frame CLIP vectors, for re-ranking."""
        ids = [int(c) for c in clip_ids]
        if not ids:
            return {}
        got = self._con.execute("SELECT clip_id, segment, row FROM clips WHERE clip_id IN (SELECT unnest(?))",
                                [ids]).fetchall()
        where = {int(cid): (int(seg), int(row)) for cid, seg, row in got}
        return {cid: np.asarray(self._segments[where[cid][0]][where[cid][1]], np.float32)
                for cid in ids if cid in where}

    def search_vectors(self, query: np.ndarray, n: int, where: ClipFilter | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest clips by inner product: (clip ids int64, scores float32), best first.

        `where` (a ClipFilter) restricts the search to the clips it matches, inside FAISS: n results
        come back whenever n clips match (index/vectors.py `search_among`).
        """
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise UserError(f"query vector has dimension {q.shape[1]}, the index {self.path} has {self.dim}")
        if where:
            return search_among(self.vector_index, q, n, self._filtered_ids(where), self.clip_vectors,
                                self.query_offset, self.added)
        n = min(int(n), self.vector_index.ntotal - len(self.tombstones) + len(self.added[0]))
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, ids = search(self.vector_index, q, n, offset=self.query_offset, tombstones=self.tombstones,
                             added=self.added)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def _filtered_ids(self, where: ClipFilter) -> np.ndarray:
        condition, params = where.sql()
        rows = self._con.execute(f"SELECT c.clip_id FROM clips c WHERE {condition}", params).fetchnumpy()
        return np.asarray(rows["clip_id"], dtype=np.int64)

    def clip_vectors(self, clip_ids: np.ndarray) -> np.ndarray:
        """(len(clip_ids), dim) float32: each clip's normalized mean frame vector (what FAISS holds)."""
        from storyreel.index.vectors import clip_vectors

        clip_ids = np.asarray(clip_ids, np.int64)
        got = self._con.execute("SELECT clip_id, segment, row FROM clips WHERE clip_id IN (SELECT unnest(?))",
                                [clip_ids.tolist()]).fetchnumpy()
        order = {int(c): i for i, c in enumerate(got["clip_id"])}
        at = np.array([order[int(c)] for c in clip_ids], np.int64)
        segments, rows = np.asarray(got["segment"], np.int64)[at], np.asarray(got["row"], np.int64)[at]
        out = np.zeros((len(clip_ids), self.dim), np.float32)
        for segment in np.unique(segments).tolist():
            where = np.flatnonzero(segments == segment)
            out[where] = clip_vectors(self._segments[segment][rows[where]])
        return out

    # --- summaries --------------------------------------------------------------------------------

    def errors(self) -> list[dict]:
        rows = self._con.execute("SELECT path, reason FROM errors ORDER BY path").fetchall()
        return [{"video": os_path(path), "reason": reason} for path, reason in rows]

    def stats(self) -> dict:
        count = lambda sql: int(self._con.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "index": str(self.path),
            "generation": self.generation,
            "videos": count("SELECT count(*) FROM videos"),
            "clips": count("SELECT count(*) FROM clips"),
            "errors": count("SELECT count(*) FROM errors"),
            "frames": count("SELECT coalesce(sum(end_frame - start_frame), 0) FROM clips"),
            "model_id": self.model_id,
            "index_type": self.index_type,
            "dim": self.dim,
            "vectors": int(self.vector_index.ntotal - len(self.tombstones) + len(self.added[0])),
            "schema_version": int(self.meta["schema_version"]),
            "settings": self.settings,
        }

    def verify(self) -> list[str]:
        """Problems found (empty list = healthy): catalog clip ids vs vector ids, frame vectors, videos."""
        problems = []
        catalog_ids = {int(r[0]) for r in self._con.execute("SELECT clip_id FROM clips").fetchall()}
        stored = vector_ids(self.vector_index)
        faiss_ids = set(stored.tolist())
        if len(stored) != len(faiss_ids):
            problems.append(f"vector index holds {len(stored) - len(faiss_ids)} duplicate id(s)")
        faiss_ids -= set(self.tombstones.tolist())  # removed clips a scan index still holds (skipped)
        faiss_ids |= set(self.added[0].tolist())  # and new clips scored beside it
        if catalog_ids - faiss_ids:
            problems.append(f"{len(catalog_ids - faiss_ids)} catalog clip(s) have no vector, e.g. id "
                            f"{min(catalog_ids - faiss_ids)}")
        if faiss_ids - catalog_ids:
            problems.append(f"{len(faiss_ids - catalog_ids)} vector id(s) have no catalog clip, e.g. id "
                            f"{min(faiss_ids - catalog_ids)}")
        if self.vector_index.d != self.dim:
            problems.append(f"vector index dimension {self.vector_index.d} != catalog dim {self.dim}")
        k = int(self.settings["frames_per_clip"])
        bad_frames = sum(1 for seg, row in self._con.execute("SELECT segment, row FROM clips").fetchall()
                         if seg not in self._segments or not 0 <= row < len(self._segments[seg])
                         or self._segments[seg].shape[1] != k)
        if bad_frames:
            problems.append(f"{bad_frames} clip(s) do not have {k} frame vectors")
        orphans = self._con.execute(
            "SELECT count(*) FROM clips WHERE video NOT IN (SELECT path FROM videos)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} clip(s) belong to no video in the catalog")
        return problems


def vector_ids(vector_index) -> np.ndarray:
    """Every id stored in a FAISS index: an IDMap's id table, or the inverted lists of an IVF index."""
    import faiss

    if hasattr(vector_index, "id_map"):
        return faiss.vector_to_array(vector_index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(vector_index)
    invlists = ivf.invlists
    parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
             for i in range(ivf.nlist) if invlists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def clip_vector(frame_vectors: np.ndarray) -> np.ndarray:
    """A clip's vector: the L2-normalized mean of its per-frame vectors (float32), as the builder stores it."""
    from storyreel.index.vectors import clip_vectors

    return clip_vectors(np.asarray(frame_vectors)[None])[0]


def frame_offsets(row: ClipRow, indices=None) -> np.ndarray:
    """`indices` (relative to the clip's first frame; None: every frame) checked against the clip's length."""
    length = row.end_frame - row.start_frame
    rel = np.arange(length) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(rel) and (rel.min() < 0 or rel.max() >= length):
        raise UserError(f"frame indices of clip {row.clip_id} must be in 0..{length - 1}")
    return rel


def open_index(index_dir) -> Index:
    """The last committed generation of an index folder (UserError if the folder is not an index)."""
    index_dir = Path(index_dir).resolve()
    for _ in range(5):  # a build may publish (and delete the old generation) between read and open
        generation = layout.current_generation(index_dir)
        if generation is None:
            raise UserError(f"{index_dir} is not a storyreel index (no {layout.CURRENT} file); "
                            f"build one with `storyreel index build VIDEO_DIR --index {index_dir}`")
        if (index_dir / generation).is_dir():
            try:
                return Index(index_dir, generation)
            except Exception:
                if layout.current_generation(index_dir) == generation:
                    raise
                continue  # replaced while we opened it: retry with the new one
    raise UserError(f"{index_dir}: {layout.CURRENT} names generation {generation!r}, which is missing; rerun "
                    f"`storyreel index build VIDEO_DIR --index {index_dir}` (it repairs {layout.CURRENT} from "
                    f"the newest complete generation)")
