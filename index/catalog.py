"""The DuckDB catalog: schema, clip rows, and the writer's one-transaction-per-video commits.

Tables (one catalog per index generation, see index/layout.py):
  meta(key, value)      schema_version, model_id, dim, settings (JSON), index_type, next_clip_id,
                        next_segment, the base vector index's base_next_clip_id / base_count /
                        trained_for (see index/vectors.py `plan_update`), query_offset (JSON list,
                        or empty: index/vectors.py `search`), index_update (what the last build did
                        to the vector index), base_generation (staging only)
  videos(path, size, mtime_ns, fingerprint, num_frames, fps, width, height)
  clips(clip_id, video, start_frame, end_frame, start_s, end_s, motion, motion_magnitude, segment, row)
  removed(clip_id)      ids in the base vector index whose clips were deleted (until it drops them;
                        a scan index keeps them as tombstones that searches skip)
  errors(path, size, mtime_ns, fingerprint, reason)
The per-frame CLIP vectors are not in the catalog: a clip's K vectors are row `row` of the float16
frame file of `segment` (index/layout.py `SegmentFile`), which the catalog row points into.
Paths are stored as `scan.db_path` text (lossless for non-UTF-8 names); rows give back `scan.os_path`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from storyreel.index.scan import db_path, os_path

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS videos (path VARCHAR, size BIGINT, mtime_ns BIGINT, fingerprint VARCHAR,
    num_frames INTEGER, fps DOUBLE, width INTEGER, height INTEGER);
CREATE TABLE IF NOT EXISTS clips (clip_id BIGINT, video VARCHAR, start_frame INTEGER, end_frame INTEGER,
    start_s DOUBLE, end_s DOUBLE, motion VARCHAR, motion_magnitude DOUBLE, segment INTEGER, row BIGINT);
CREATE TABLE IF NOT EXISTS removed (clip_id BIGINT);
CREATE TABLE IF NOT EXISTS errors (path VARCHAR, size BIGINT, mtime_ns BIGINT, fingerprint VARCHAR, reason VARCHAR);
"""


@dataclass(frozen=True)
class ClipRow:
    """One clip as `index ls --json` / `search --json` show it (CLI.md), plus the video's fingerprint."""

    clip_id: int
    video: str
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float
    fps: float
    width: int
    height: int
    motion: str
    motion_magnitude: float
    video_fingerprint: str  # changes whenever the video file changes (cache key for derived data)

    def to_dict(self) -> dict:
        return asdict(self)


CLIP_ROW_SQL = """
SELECT c.clip_id, c.video, c.start_frame, c.end_frame, c.start_s, c.end_s, v.fps, v.width, v.height,
       c.motion, c.motion_magnitude, v.fingerprint
FROM clips c JOIN videos v ON v.path = c.video
"""


@dataclass(frozen=True)
class ClipFilter:
    """Which clips a search may return (None = no constraint): camera motion label, duration range in
    seconds, and source video (a file path, or a folder: every video under it). Applied inside the
    vector search (index/vectors.py `search_among`), so a rare label still fills k results."""

    motion: str | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    video: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def matches(self, row: ClipRow) -> bool:
        seconds = row.end_s - row.start_s
        return ((self.motion is None or row.motion == self.motion)
                and (self.min_seconds is None or seconds >= self.min_seconds - 1e-9)
                and (self.max_seconds is None or seconds <= self.max_seconds + 1e-9)
                and (self.video is None or row.video == self.video
                     or row.video.startswith(self.video.rstrip("/") + "/")))

    def sql(self) -> tuple[str, list]:
        """(WHERE condition over `clips c`, parameters) selecting exactly the rows `matches` accepts."""
        terms, params = ["TRUE"], []
        if self.motion is not None:
            terms.append("c.motion = ?")
            params.append(self.motion)
        if self.min_seconds is not None:
            terms.append("c.end_s - c.start_s >= ?")
            params.append(self.min_seconds - 1e-9)
        if self.max_seconds is not None:
            terms.append("c.end_s - c.start_s <= ?")
            params.append(self.max_seconds + 1e-9)
        if self.video is not None:
            terms.append("(c.video = ? OR starts_with(c.video, ?))")
            params += [db_path(self.video), db_path(self.video.rstrip("/") + "/")]
        return " AND ".join(terms), params


def clip_row(record) -> ClipRow:
    cid, video, sf, ef, ss, es, fps, w, h, motion, mag, fp = record
    return ClipRow(int(cid), os_path(video), int(sf), int(ef), float(ss), float(es), float(fps), int(w), int(h),
                   motion, float(mag), fp)


# --- meta -----------------------------------------------------------------------------------------

def read_meta(con) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def set_meta(con, **values) -> None:
    for key, value in values.items():
        con.execute("DELETE FROM meta WHERE key = ?", [key])
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, str(value)])


def create_catalog(con, model_id: str, dim: int, settings: dict) -> None:
    con.execute(SCHEMA)
    set_meta(con, schema_version=SCHEMA_VERSION, model_id=model_id, dim=dim,
             settings=json.dumps(settings, sort_keys=True), index_type="", next_clip_id=0, next_segment=1,
             base_next_clip_id=0, base_count=0, trained_for=0, query_offset="", index_update="")


# --- writer ---------------------------------------------------------------------------------------

def known_files(con) -> dict[str, tuple[int, int, str]]:
    """{path: (size, mtime_ns, fingerprint)} for every file the catalog has seen (indexed or failed)."""
    rows = con.execute("SELECT path, size, mtime_ns, fingerprint FROM videos "
                       "UNION ALL SELECT path, size, mtime_ns, fingerprint FROM errors").fetchall()
    return {os_path(path): (int(size), int(mtime), fp) for path, size, mtime, fp in rows}


def _forget(con, path: str) -> None:
    path = db_path(path)
    # Clips already in the base vector index become tombstones; newer ones were never in it.
    con.execute("INSERT INTO removed SELECT clip_id FROM clips WHERE video = ? AND clip_id < "
                "(SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'base_next_clip_id')", [path])
    con.execute("DELETE FROM clips WHERE video = ?", [path])
    con.execute("DELETE FROM videos WHERE path = ?", [path])
    con.execute("DELETE FROM errors WHERE path = ?", [path])


def drop_videos(con, paths: list[str]) -> None:
    """Remove files that left the folder (one transaction)."""
    con.execute("BEGIN")
    for path in paths:
        _forget(con, path)
    con.execute("COMMIT")


def touch_videos(con, touched) -> None:
    """Files whose content is unchanged but mtime moved: record the new stat so the next scan is cheap."""
    con.execute("BEGIN")
    for f, _ in touched:
        for table in ("videos", "errors"):
            con.execute(f"UPDATE {table} SET mtime_ns = ? WHERE path = ?", [f.mtime_ns, db_path(f.path)])
    con.execute("COMMIT")


def commit_video(con, record, frames) -> list[int]:
    """Replace everything known about one file with `record` (a records.VideoRecord) in ONE transaction.

    `frames` is the build's open `layout.SegmentFile`: the clips' per-frame vectors are appended
    (and synced) there first, then the transaction points the clip rows at them, so a kill leaves
    at most unreferenced bytes at the file's end. Clip ids come from the `next_clip_id` counter in
    meta, so ids are never reused and are assigned in the order videos are committed (sorted path
    order). Returns the new clip ids.
    """
    f = record.file
    path = db_path(f.path)
    first_row = frames.append(np.stack([c.frame_vectors for c in record.clips])) if record.clips else 0
    con.execute("BEGIN")
    try:
        _forget(con, f.path)
        clip_ids: list[int] = []
        if record.error is not None:
            con.execute("INSERT INTO errors VALUES (?, ?, ?, ?, ?)",
                        [path, f.size, f.mtime_ns, record.fingerprint, record.error])
        else:
            info = record.info
            con.execute("INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [path, f.size, f.mtime_ns, record.fingerprint, info.num_frames, info.fps,
                         info.width, info.height])
            next_id = int(con.execute("SELECT value FROM meta WHERE key = 'next_clip_id'").fetchone()[0])
            clip_ids = list(range(next_id, next_id + len(record.clips)))
            next_id += len(clip_ids)
            if clip_ids:
                # One statement of column lists (DuckDB's executemany costs ~2 ms a row).
                columns = [clip_ids, [path] * len(clip_ids), [c.start_frame for c in record.clips],
                           [c.end_frame for c in record.clips], [float(c.start_s) for c in record.clips],
                           [float(c.end_s) for c in record.clips], [c.motion for c in record.clips],
                           [float(c.motion_magnitude) for c in record.clips], [frames.segment] * len(clip_ids),
                           list(range(first_row, first_row + len(clip_ids)))]
                con.execute("INSERT INTO clips SELECT " + ", ".join(["unnest(?)"] * len(columns)),
                            [[int(v) if isinstance(v, (int, np.integer)) else v for v in col] for col in columns])
            con.execute("UPDATE meta SET value = ? WHERE key = 'next_clip_id'", [str(next_id)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return clip_ids


def clip_locations(con, where: str = "TRUE", params=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip ids, segments, rows) of the clips matching `where`, ordered by clip id."""
    got = con.execute(f"SELECT clip_id, segment, row FROM clips WHERE {where} ORDER BY clip_id",
                      list(params)).fetchnumpy()
    return (np.asarray(got["clip_id"], np.int64), np.asarray(got["segment"], np.int64),
            np.asarray(got["row"], np.int64))
