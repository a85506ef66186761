"""The DuckDB catalog: schema, clip rows, and the writer's one-transaction-per-video commits.

Tables (one catalog per index generation, see index/layout.py):
  meta(key, value)      schema_version, model_id, dim, settings (JSON), index_type, next_clip_id,
                        base_generation (staging only: the generation it was copied from)
  videos(path, size, mtime_ns, fingerprint, num_frames, fps, width, height)
  clips(clip_id, video, start_frame, end_frame, start_s, end_s, motion, motion_magnitude, vector)
  frames(clip_id, k, frame_index, vector)     per-frame CLIP vectors (K per clip) for re-ranking
  errors(path, size, mtime_ns, fingerprint, reason)
Vectors are float32 little-endian BLOBs of `dim` values (exact round trip, no list conversion).
Paths are stored as `scan.db_path` text (lossless for non-UTF-8 names); rows give back `scan.os_path`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from storyreel.index.scan import db_path, os_path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS videos (path VARCHAR, size BIGINT, mtime_ns BIGINT, fingerprint VARCHAR,
    num_frames INTEGER, fps DOUBLE, width INTEGER, height INTEGER);
CREATE TABLE IF NOT EXISTS clips (clip_id BIGINT, video VARCHAR, start_frame INTEGER, end_frame INTEGER,
    start_s DOUBLE, end_s DOUBLE, motion VARCHAR, motion_magnitude DOUBLE, vector BLOB);
CREATE TABLE IF NOT EXISTS frames (clip_id BIGINT, k INTEGER, frame_index INTEGER, vector BLOB);
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


def clip_row(record) -> ClipRow:
    cid, video, sf, ef, ss, es, fps, w, h, motion, mag, fp = record
    return ClipRow(int(cid), os_path(video), int(sf), int(ef), float(ss), float(es), float(fps), int(w), int(h),
                   motion, float(mag), fp)


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blobs(blobs, dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


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
             settings=json.dumps(settings, sort_keys=True), index_type="", next_clip_id=0)


# --- writer ---------------------------------------------------------------------------------------

def known_files(con) -> dict[str, tuple[int, int, str]]:
    """{path: (size, mtime_ns, fingerprint)} for every file the catalog has seen (indexed or failed)."""
    rows = con.execute("SELECT path, size, mtime_ns, fingerprint FROM videos "
                       "UNION ALL SELECT path, size, mtime_ns, fingerprint FROM errors").fetchall()
    return {os_path(path): (int(size), int(mtime), fp) for path, size, mtime, fp in rows}


def _forget(con, path: str) -> None:
    path = db_path(path)
    con.execute("DELETE FROM frames WHERE clip_id IN (SELECT clip_id FROM clips WHERE video = ?)", [path])
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


def commit_video(con, record) -> list[int]:
    """Replace everything known about one file with `record` (a build.VideoRecord) in ONE transaction.

    Clip ids come from the `next_clip_id` counter in meta, so ids are never reused and are assigned
    in the order videos are committed (sorted path order). Returns the new clip ids.
    """
    f = record.file
    path = db_path(f.path)
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
            clip_rows, frame_rows = [], []
            for clip in record.clips:
                cid = next_id
                next_id += 1
                clip_ids.append(cid)
                clip_rows.append([cid, path, clip.start_frame, clip.end_frame, clip.start_s, clip.end_s,
                                  clip.motion, clip.motion_magnitude,
                                  to_blob(clip.vector)])
                frame_rows += [[cid, k, int(fi), to_blob(v)]
                               for k, (fi, v) in enumerate(zip(clip.frame_indices, clip.frame_vectors))]
            if clip_rows:
                con.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", clip_rows)
                con.executemany("INSERT INTO frames VALUES (?, ?, ?, ?)", frame_rows)
            con.execute("UPDATE meta SET value = ? WHERE key = 'next_clip_id'", [str(next_id)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return clip_ids


def all_clip_vectors(con, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(clip ids int64, mean vectors float32 (N, dim)) ordered by clip id."""
    rows = con.execute("SELECT clip_id, vector FROM clips ORDER BY clip_id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, from_blobs([r[1] for r in rows], dim)
