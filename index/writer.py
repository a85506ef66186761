"""The index build's writer: commits mapped `VideoRecord`s, then publishes them (clip-retrieval's writer stage).

One DuckDB transaction per video in a staging catalog (index/catalog.py; the resume point after a
crash; frame vectors go to one new float16 segment file, index/layout.py), then the vector index
update (index/vectors.py `plan_update`: add to the trained index, compact, or retrain), then an
atomic publish. Work is proportional to the change, not to the index.
`write_videos` is the writer alone, for records made without decoding any video.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write
from storyreel.index import catalog, layout
from storyreel.index import repair as repair_files
from storyreel.index.records import BuildReport, BuildSettings, VideoRecord
from storyreel.index.vectors import apply_changes, encode_offset

logger = logging.getLogger(__name__)


@dataclass
class Repairs:
    """What this build rebuilds of the published generation (`check_published`)."""

    damage: dict[str, str] = field(default_factory=dict)  # damaged file -> its problem
    fresh: bool = False  # the catalog, or frame vectors it points at, are lost: decode every video again
    first_id: int = 0    # the fresh catalog's first clip id: above every id the vector index used
    notes: list[str] = field(default_factory=list)  # one line per repair (the report's notes)


def check_published(index_dir: Path, repair: bool) -> Repairs:
    """Make the index folder ready for a build (finish an interrupted publish, drop unpublished
    leftovers) and find the damage of its published generation: UserError naming it unless `repair`.
    Each repair is logged as a note (shown even with --quiet)."""
    repairs = Repairs()
    if note := layout.repair_current(index_dir):
        repairs.notes.append(note)
    layout.remove_unpublished(index_dir, keep_staging=True)
    generation = layout.current_generation(index_dir)
    repairs.damage = repair_files.check_generation(index_dir, generation) if generation else {}
    if repairs.damage and not repair:
        file, problem = next(iter(repairs.damage.items()))
        raise UserError(repair_files.damage_message(index_dir, generation, file, problem))
    repairs.fresh = any(file == layout.CATALOG or file.startswith("frames-") for file in repairs.damage)
    repairs.first_id = repair_files.next_id_after_vectors(index_dir, generation) if repairs.fresh else 0
    for file, problem in repairs.damage.items():
        repairs.notes.append(f"{generation}/{file} was damaged ({problem}); " + (
            f"rebuilt it by decoding every video again (new clip ids start at {repairs.first_id})"
            if repairs.fresh and file != layout.VECTORS else "rebuilt it from the frame vectors"))
    for note in repairs.notes:
        logger.warning("note: %s", note)
    return repairs


@dataclass
class Published:
    """What `IndexWriter.publish` left in the index folder."""

    generation: str | None
    index_type: str
    index_update: str  # what happened to the vector index and why (vectors.plan_update)
    videos: int
    clips: int
    errors: int


class IndexWriter:
    """The staging catalog of one build and the segment file its frame vectors go to.

    Use it under `layout.build_lock`: commit records, then `publish` once. Closing it without
    publishing keeps the staging catalog: the next build resumes from its commits.
    """

    def __init__(self, index_dir: Path, model_id: str, dim: int, settings: BuildSettings,
                 repairs: Repairs | None = None):
        self.index_dir, self.dim, self.settings = index_dir, dim, settings
        self.repairs = repairs or Repairs()
        self.con, self.resumed, self.segment = _open_staging(index_dir, model_id, dim, settings, self.repairs.fresh)
        if self.repairs.first_id:
            next_id = max(self.repairs.first_id, int(catalog.read_meta(self.con)["next_clip_id"]))
            catalog.set_meta(self.con, next_clip_id=next_id)
        self.changed = False  # anything committed, dropped or touched

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.segment.close()
        self.con.close()

    def known_files(self) -> dict:
        return catalog.known_files(self.con)

    def drop(self, paths) -> None:
        """Remove these files' videos and clips from the catalog."""
        if paths:
            catalog.drop_videos(self.con, list(paths))
            self.changed = True

    def touch(self, files) -> None:
        """Record the new size/mtime of files whose content is unchanged (scan.diff_against_catalog)."""
        if files:
            catalog.touch_videos(self.con, files)
            self.changed = True

    def commit(self, record: VideoRecord) -> int:
        """Commit one file's clips (or its error) in one transaction; returns the clips added."""
        self.changed = True
        return len(catalog.commit_video(self.con, record, self.segment))

    def publish(self, text_queries=None) -> Published:
        """Publish the staging folder as the next generation, or drop it when nothing changed. Closes.
        `text_queries()`: text-like query vectors to tune a new vector index's search parameters with."""
        staging = self.index_dir / layout.STAGING
        nothing_changed = (not (self.resumed or self.changed or self.repairs.damage)
                           and layout.current_generation(self.index_dir) is not None)
        if nothing_changed:
            index_type, index_update = catalog.read_meta(self.con)["index_type"], "unchanged"
        else:
            index_type, index_update = self._update_files(staging, text_queries)
            self.con.execute("DELETE FROM meta WHERE key = 'base_generation'")
            self.con.execute("CHECKPOINT")
        counts = self.con.execute("SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM clips), "
                                  "(SELECT count(*) FROM errors)").fetchone()
        self.close()
        if nothing_changed:
            shutil.rmtree(staging, ignore_errors=True)
            generation = layout.current_generation(self.index_dir)
        else:
            generation = layout.publish(self.index_dir, staging)
        return Published(generation, index_type, index_update, *(int(n) for n in counts))

    def _update_files(self, staging: Path, text_queries) -> tuple[str, str]:
        """Finish the staging folder: link the unchanged files of the published generation, bring the
        vector index up to date, record it in meta. Returns (index type, update). A damaged vector
        index is rebuilt from the frame vectors (`_segment_vectors`), never linked."""
        con, segment = self.con, self.segment
        meta = catalog.read_meta(con)
        base = layout.current_generation(self.index_dir)
        segments = [s for (s,) in con.execute("SELECT DISTINCT segment FROM clips ORDER BY segment").fetchall()]
        vectors_ok = bool(meta["index_type"]) and layout.VECTORS not in self.repairs.damage
        if base:
            layout.link_into(self.index_dir / base, [layout.frames_name(s) for s in segments if s != segment.segment]
                             + ([layout.VECTORS] if vectors_ok else []), staging)
        if segment.rows == 0 or segment.segment not in segments:  # nothing of this build's segment is live
            segment.close()
            (staging / layout.frames_name(segment.segment)).unlink(missing_ok=True)
        index_type, reason = self._update_vector_index(staging, meta, vectors_ok, text_queries)
        catalog.set_meta(con, next_segment=segment.segment + 1)
        return index_type, reason

    def _update_vector_index(self, staging: Path, meta: dict, vectors_ok: bool, text_queries) -> tuple[str, str]:
        """Add to the trained vector index, compact or retrain it (vectors.plan_update); record it in meta."""
        import faiss

        from storyreel.index.vectors import build_vector_index, choose_index_spec, index_family, plan_update

        con, dim, settings = self.con, self.dim, self.settings
        base_next = int(meta["base_next_clip_id"])
        total, added = con.execute("SELECT count(*), count(*) FILTER (WHERE clip_id >= ?) FROM clips",
                                   [base_next]).fetchone()
        removed = con.execute("SELECT count(*) FROM removed").fetchone()[0]
        action, reason = plan_update(meta["index_type"], int(meta["base_count"]), int(meta["trained_for"]),
                                     int(total), int(added), int(removed), dim)
        if not vectors_ok and action not in ("build", "retrain"):
            action, reason = "retrain", f"rebuilt the damaged vector index from the frame vectors ({total:,} clips)"
        index_type, trained_for = meta["index_type"], int(meta["trained_for"])
        tombstones = np.zeros(0, np.int64)
        if action in ("build", "retrain"):
            ids, vectors = _segment_vectors(staging, con, settings, dim)
            index_type, trained_for = choose_index_spec(len(ids), dim), len(ids)
            queries = text_queries() if text_queries is not None and index_family(index_type) != "flat" else None
            vector_index, offset = build_vector_index(ids, vectors, spec=index_type, tune_queries=queries)
            catalog.set_meta(con, query_offset=encode_offset(offset))
        elif action == "compact":
            vector_index = faiss.read_index(str(staging / layout.VECTORS))
            ids, vectors = _segment_vectors(staging, con, settings, dim, "clip_id >= ?", [base_next])
            tombstones = apply_changes(vector_index, ids, vectors, _removed_ids(con))
        if action in ("build", "retrain", "compact"):
            # A new file replaces the link (the published generation keeps its own copy).
            atomic_write(staging / layout.VECTORS, lambda tmp: faiss.write_index(vector_index, str(tmp)))
            if not len(tombstones):  # else the file still holds the removed ids (searches skip them)
                con.execute("DELETE FROM removed")
            catalog.set_meta(con, base_next_clip_id=meta["next_clip_id"], base_count=vector_index.ntotal)
        catalog.set_meta(con, index_type=index_type, trained_for=trained_for, index_update=reason)
        return index_type, reason


def _open_staging(index_dir: Path, model_id: str, dim: int, settings: BuildSettings, fresh: bool = False):
    """(connection, resumed, segment file): a writable staging catalog based on the current generation
    (an empty one if `fresh`), resumed if a killed build left one (then it may hold commits the
    published generation lacks), and the segment file this build appends frame vectors to."""
    import duckdb

    base = "" if fresh else layout.current_generation(index_dir) or ""
    staging = index_dir / layout.STAGING
    wanted = {"model_id": model_id, "settings": json.dumps(settings.catalog_settings(), sort_keys=True)}
    if (staging / layout.CATALOG).exists():
        try:
            con = duckdb.connect(str(staging / layout.CATALOG))
            meta = catalog.read_meta(con)
        except duckdb.Error:  # a damaged work copy: start again from the published generation
            con, meta = None, {}
        if meta.get("base_generation") == base and all(meta.get(k) == v for k, v in wanted.items()):
            return con, True, _segment_file(con, staging, settings, dim)  # commits before the kill are there
        if con is not None:
            con.close()
    shutil.rmtree(staging, ignore_errors=True)
    fresh = index_dir / (layout.STAGING + ".tmp")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    if base:
        # The catalog holds no vectors (~30 bytes a clip); segments and the vector index are linked at publish.
        shutil.copy2(index_dir / base / layout.CATALOG, fresh / layout.CATALOG)
    con = duckdb.connect(str(fresh / layout.CATALOG))
    if not base:
        catalog.create_catalog(con, model_id, dim, settings.catalog_settings())
    meta = catalog.read_meta(con)
    if meta.get("schema_version") != str(catalog.SCHEMA_VERSION):
        con.close()
        shutil.rmtree(fresh, ignore_errors=True)
        raise UserError(f"index {index_dir} was written by an older storyreel (catalog schema "
                        f"{meta.get('schema_version')}); build into a new --index folder (or delete {index_dir})")
    for key, value in wanted.items():
        if meta[key] != value:
            con.close()
            shutil.rmtree(fresh, ignore_errors=True)
            raise UserError(f"index {index_dir} was built with {key} {meta[key]}, this build uses {value}; "
                            f"build into a new --index folder (or delete {index_dir})")
    catalog.set_meta(con, base_generation=base)
    con.close()
    os.rename(fresh, staging)
    con = duckdb.connect(str(staging / layout.CATALOG))
    return con, False, _segment_file(con, staging, settings, dim)


def _segment_file(con, staging: Path, settings: BuildSettings, dim: int) -> layout.SegmentFile:
    """This build's frame-vector segment, cut back to the rows the catalog commits point at."""
    segment = int(catalog.read_meta(con)["next_segment"])
    committed = con.execute("SELECT coalesce(max(row) + 1, 0) FROM clips WHERE segment = ?", [segment]).fetchone()[0]
    return layout.SegmentFile(staging / layout.frames_name(segment), segment, settings.frames_per_clip, dim,
                              committed_rows=int(committed))


def _segment_vectors(folder: Path, con, settings: BuildSettings, dim: int, where: str = "TRUE", params=()):
    """(clip ids, clip vectors float32) of the clips matching `where`, from the segment files in `folder`.
    Every clip's vector can be rebuilt from these files: the vector index is derived data (`--repair`)."""
    from storyreel.index.vectors import clip_vectors

    ids, segments, rows = catalog.clip_locations(con, where, params)
    vectors = np.zeros((len(ids), dim), np.float32)
    for segment in np.unique(segments).tolist():
        at = np.flatnonzero(segments == segment)
        frames = layout.read_segment(folder / layout.frames_name(segment), settings.frames_per_clip, dim)
        for start in range(0, len(at), 65_536):  # bounded memory at any size
            part = at[start:start + 65_536]
            vectors[part] = clip_vectors(frames[rows[part]])
    return ids, vectors

def _removed_ids(con) -> np.ndarray:
    return np.asarray(con.execute("SELECT clip_id FROM removed").fetchnumpy()["clip_id"], np.int64)


def write_videos(index_dir, records, *, model_id: str, dim: int, settings: BuildSettings | None = None,
                 removed: list[str] = (), tune_queries: np.ndarray | None = None) -> BuildReport:
    """The writer alone: commit already-mapped `VideoRecord`s (and drop the `removed` paths), publish.
    `tune_queries`: text-like query vectors a new vector index is tuned with (the build uses the CLIP
    text encoder on vectors.TUNING_CAPTIONS).

    What `build` does after its mapper, for records made elsewhere: scripts/bench_scale.py and the
    tests write large synthetic catalogs through it without decoding any video.
    """
    settings = settings or BuildSettings()
    index_dir = Path(index_dir).resolve()
    t0 = time.monotonic()
    clips_added = count = 0
    with layout.build_lock(index_dir):
        layout.remove_unpublished(index_dir, keep_staging=True)
        with IndexWriter(index_dir, model_id, dim, settings) as writer:
            writer.drop(removed)
            for record in records:
                clips_added += writer.commit(record)
                count += 1
            done = writer.publish(None if tune_queries is None else (lambda: tune_queries))
    return BuildReport(str(index_dir), done.generation, videos=done.videos, new=count, changed=0, unchanged=0,
                       removed=len(removed), errors=done.errors, clips_added=clips_added, clips=done.clips,
                       frames_decoded=0, seconds=round(time.monotonic() - t0, 3), index_type=done.index_type,
                       index_update=done.index_update)
