"""`index.build`: reader → mapper → writer, the way clip-retrieval is structured.

1. reader  (index/scan.py): list the video files, diff them against the catalog.
2. mapper  (`map_video`, a pure function of file, settings and embedder, so it can run on a Ray
   worker unchanged): probe → decode small frames → shots → clips → decode the sampled frames →
   camera motion → CLIP. It is split into `decode_video` (threads, `workers` of them) and
   `embed_video` (the main thread), which overlap: while one video is embedded the next ones decode.
3. writer  (index/catalog.py + index/layout.py): one DuckDB transaction per video in a staging
   catalog (the resume point after a crash), then the FAISS index, then an atomic publish.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write
from storyreel.core.video import BadVideo, VideoInfo, frame_times, iter_frames, probe, scaled_size, segment_centres
from storyreel.index import catalog, layout
from storyreel.index import repair as repair_files
from storyreel.index.scan import FileStat, check_removals, diff_against_catalog, entry_error, find_videos, fingerprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    """Everything that decides what the catalog contains; stored in meta, must match to reuse an index."""

    max_clip_s: float = 8.0
    min_clip_s: float = 1.0
    frames_per_clip: int = 8
    shot_short_side: int = 64       # frames for the cut detector (every frame is decoded at this size)
    analysis_short_side: int = 224  # frames for CLIP and motion
    motion_frames: int = 9          # frames handed to camera_motion per clip, ~0.1 s apart

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipRecord:
    start_frame: int
    end_frame: int
    frame_indices: np.ndarray           # (K,) absolute indices of the embedded frames
    motion: str
    motion_magnitude: float
    start_s: float = 0.0                # from the frame timestamps (core/video.py frame_times)
    end_s: float = 0.0
    frames: np.ndarray | None = None    # (K,h,w,3) uint8, dropped after embedding
    frame_vectors: np.ndarray | None = None  # (K, dim)
    vector: np.ndarray | None = None          # (dim,) mean-pooled, L2-normalized


@dataclass
class VideoRecord:
    """The mapper's output for one file: clips with vectors, or an error reason."""

    file: FileStat
    fingerprint: str
    info: VideoInfo | None = None
    clips: list[ClipRecord] = field(default_factory=list)
    error: str | None = None
    frames_decoded: int = 0


@dataclass
class BuildReport:
    index: str
    generation: str | None
    videos: int
    new: int
    changed: int
    unchanged: int
    removed: int
    errors: int             # files in the errors table after the build
    clips_added: int
    clips: int              # clips in the index after the build
    frames_decoded: int
    seconds: float
    index_type: str
    notes: list[str] = field(default_factory=list)  # repairs the build made (also printed on stderr)

    def to_dict(self) -> dict:
        return asdict(self)


# --- mapper ---------------------------------------------------------------------------------------

def motion_indices(start: int, end: int, fps: float, count: int) -> tuple[np.ndarray, int]:
    """Up to `count` frames ~0.1 s apart around the clip centre, and their spacing in source frames."""
    step = max(1, min(int(round(fps / 10)), (end - start - 1) // max(1, count - 1)))
    span = step * (min(count, (end - start - 1) // step + 1) - 1)
    first = start + (end - start - 1 - span) // 2
    return np.arange(first, first + span + 1, step, dtype=np.int64), step


def decode_video(file: FileStat, settings: BuildSettings, progress=None) -> VideoRecord:
    """Decode stage of the mapper: shots, clips, sampled frames and camera motion (no CLIP).

    progress: a `Progress` (storyreel/core/progress.py) told the frames decoded within this file.
    """
    from storyreel.index.motion import camera_motion
    from storyreel.index.shots import detect_cuts, split_into_clips

    record = VideoRecord(file, "")
    if file.error is not None:  # found by the scan: dangling link, loop, not a regular file, ...
        record.error = file.error
        return record
    try:
        record.fingerprint = fingerprint(file.path)
        info = record.info = probe(file.path)
        times = frame_times(file.path, info)
        # Pass 1: every frame, small, for the cut detector.
        shot_size = scaled_size(info, settings.shot_short_side)
        small = []
        for _, batch in iter_frames(file.path, range(info.num_frames), shot_size):
            small.append(batch)
            if progress is not None:
                progress.update(frames=sum(map(len, small)), of=info.num_frames)
        small = np.concatenate(small)
        record.frames_decoded += len(small)
        num_frames = len(small)
        spans = split_into_clips(num_frames, detect_cuts(small), info.fps, settings.min_clip_s, settings.max_clip_s)
        del small
        if not spans:
            raise BadVideo(f"no clip: {num_frames / info.fps:.2f} s of video is shorter than the "
                           f"minimum clip length {settings.min_clip_s:g} s")
        # Pass 2: only the frames CLIP and the motion analysis need, ascending, at analysis size.
        plans = []
        for start, end in spans:
            embed_at = segment_centres(start, end, settings.frames_per_clip)
            motion_at, step = motion_indices(start, end, info.fps, settings.motion_frames)
            plans.append((start, end, embed_at, motion_at, step))
        wanted = np.unique(np.concatenate([np.concatenate([p[2], p[3]]) for p in plans]))
        frames = {}
        for idx, batch in iter_frames(file.path, wanted, scaled_size(info, settings.analysis_short_side)):
            frames.update(zip(idx.tolist(), batch))
        record.frames_decoded += len(wanted)
        for start, end, embed_at, motion_at, step in plans:
            motion = camera_motion(np.stack([frames[i] for i in motion_at.tolist()]), frame_step=step)
            record.clips.append(ClipRecord(start, end, embed_at, motion.label, float(motion.magnitude),
                                           float(times[start]), float(times[end]),
                                           frames=np.stack([frames[i] for i in embed_at.tolist()])))
        record.info = info
    except BadVideo as err:
        record.error, record.clips = str(err), []
    except OSError as err:  # unreadable, or deleted/replaced while the build runs
        record.error, record.clips = entry_error(err), []
    except Exception as err:  # noqa: BLE001 - one strange file must not stop the build; the type names the bug
        record.error, record.clips = f"decoding failed ({type(err).__name__}: {str(err).strip()[:160]})", []
    return record


def embed_video(record: VideoRecord, embedder) -> VideoRecord:
    """Embed stage of the mapper: per-frame CLIP vectors and their normalized mean, per clip."""
    if not record.clips:
        return record
    k = len(record.clips[0].frames)
    vectors = embedder.embed_images(np.concatenate([c.frames for c in record.clips]))
    for i, clip in enumerate(record.clips):
        clip.frame_vectors = vectors[i * k:(i + 1) * k]
        mean = clip.frame_vectors.mean(axis=0)
        clip.vector = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        clip.frames = None
    return record


def map_video(file: FileStat, settings: BuildSettings, embedder) -> VideoRecord:
    """The whole mapper for one file (what a Ray worker would run)."""
    return embed_video(decode_video(file, settings), embedder)


def embed_threads(workers: int) -> int:
    """Torch threads while `workers` decode threads run: oversubscribed torch threads spin and stall both stages."""
    import torch

    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - max(1, workers)))


def run_pipeline(files: list[FileStat], settings: BuildSettings, embedder, workers: int = 1, frames_progress=None):
    """Yield mapped VideoRecords in `files` order; decoding runs ahead in `workers` threads.

    frames_progress: a `Progress` told the frames decoded within the file being decoded.
    """
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(embed_threads(workers))
    try:
        yield from _overlapped(files, settings, embedder, workers, frames_progress)
    finally:
        torch.set_num_threads(torch_threads)


def _overlapped(files, settings, embedder, workers, frames_progress=None):
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        pending = []
        ahead = max(1, workers) + 1  # bounded: at most this many decoded videos wait in memory
        it = iter(files)
        for f in it:
            pending.append(pool.submit(decode_video, f, settings, frames_progress))
            if len(pending) >= ahead:
                break
        while pending:
            decoded = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(decode_video, nxt, settings, frames_progress))
            yield embed_video(decoded, embedder)


# --- writer / runner ------------------------------------------------------------------------------

def _open_staging(index_dir: Path, model_id: str, dim: int, settings: BuildSettings, fresh: bool = False):
    """(connection, resumed): a writable staging catalog based on the current generation (an empty one
    if `fresh`), resumed if a killed build left one (then it may hold commits the published generation lacks)."""
    import duckdb

    base = "" if fresh else layout.current_generation(index_dir) or ""
    staging = index_dir / layout.STAGING
    wanted = {"model_id": model_id, "settings": json.dumps(settings.to_dict(), sort_keys=True)}
    if (staging / layout.CATALOG).exists():
        try:
            con = duckdb.connect(str(staging / layout.CATALOG))
            meta = catalog.read_meta(con)
        except duckdb.Error:  # a damaged work copy: start again from the published generation
            con, meta = None, {}
        if meta.get("base_generation") == base and all(meta.get(k) == v for k, v in wanted.items()):
            return con, True  # every video committed before the kill is already there
        if con is not None:
            con.close()
    shutil.rmtree(staging, ignore_errors=True)
    fresh = index_dir / (layout.STAGING + ".tmp")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    if base:
        shutil.copy2(index_dir / base / layout.CATALOG, fresh / layout.CATALOG)
    con = duckdb.connect(str(fresh / layout.CATALOG))
    if not base:
        catalog.create_catalog(con, model_id, dim, settings.to_dict())
    meta = catalog.read_meta(con)
    for key, value in wanted.items():
        if meta[key] != value:
            con.close()
            shutil.rmtree(fresh, ignore_errors=True)
            raise UserError(f"index {index_dir} was built with {key} {meta[key]}, this build uses {value}; "
                            f"build into a new --index folder (or delete {index_dir})")
    catalog.set_meta(con, base_generation=base)
    con.close()
    os.rename(fresh, staging)
    return duckdb.connect(str(staging / layout.CATALOG)), False


def _check_published(index_dir: Path, repair: bool, notes: list[str]) -> tuple[dict, bool, int]:
    """(damaged files, start a fresh catalog?, first clip id for it) of the published generation;
    UserError naming the damage unless `repair`."""
    generation = layout.current_generation(index_dir)
    damage = repair_files.check_generation(index_dir, generation) if generation else {}
    if not damage:
        return damage, False, 0
    if not repair:
        file, problem = next(iter(damage.items()))
        raise UserError(repair_files.damage_message(index_dir, generation, file, problem))
    fresh = layout.CATALOG in damage
    first_id = repair_files.next_id_after_vectors(index_dir, generation) if fresh else 0
    for file, problem in damage.items():
        notes.append(f"{generation}/{file} was damaged ({problem}); " + (
            f"rebuilt it by decoding every video again (new clip ids start at {first_id})" if fresh and
            file == layout.CATALOG else "rebuilt it from the catalog's clip vectors"))
    return damage, fresh, first_id


def _write_vectors(con, staging: Path, dim: int) -> str:
    import faiss

    from storyreel.index.vectors import build_vector_index, choose_index_spec

    ids, vectors = catalog.all_clip_vectors(con, dim)
    index_type = choose_index_spec(len(ids), dim)
    vector_index = build_vector_index(ids, vectors)
    atomic_write(staging / layout.VECTORS, lambda tmp: faiss.write_index(vector_index, str(tmp)))
    return index_type


def build(video_dir, index_dir, preset=None, *, max_clip_s: float = 8.0, min_clip_s: float = 1.0,
          frames_per_clip: int = 8, workers: int = 1, embedder=None, progress=None,
          on_video_committed: Callable[[VideoRecord], None] | None = None, allow_removals: bool = False,
          repair: bool = False, device=None, dtype=None) -> BuildReport:
    """Index every video under `video_dir` into `index_dir` (incremental, crash-safe). See module doc.

    preset: a name or a ModelPreset (its CLIP embeds); device/dtype: where and in what precision
    (storyreel.core.devices' defaults: CUDA in fp16 when present).
    allow_removals: let the build drop more than half of the index's videos (or all of them) when they
    are gone from `video_dir`; without it such a build stops first (scan.check_removals).
    repair: rebuild damaged index files from what is intact (index/repair.py); without it a build over
    a damaged index stops with one line.

    progress: a `Progress` (storyreel/core/progress.py) told files done and, in a child bar, the frames
    decoded within the current file; None reports nothing.
    on_video_committed: called with each file's `VideoRecord` (clips or error reason) right after its
    catalog transaction commits, i.e. once the file is safe: a build killed after that point resumes
    without decoding it again. It runs on the build's thread, between files (a slow callback slows the
    build; an exception aborts it, leaving a resumable staging catalog).
    """
    from storyreel.core.models import get_preset
    from storyreel.core.progress import Progress
    from storyreel.index.embed import load_clip

    video_dir, index_dir = Path(video_dir).resolve(), Path(index_dir).resolve()
    if not video_dir.is_dir():
        raise UserError(f"video folder {video_dir} does not exist or is not a folder")
    if not (0 < min_clip_s <= max_clip_s < math.inf) or frames_per_clip < 1:
        raise UserError(f"clip lengths must be finite with 0 < --min-seconds ({min_clip_s:g}) <= --max-seconds "
                        f"({max_clip_s:g}), and frames_per_clip ({frames_per_clip}) at least 1")
    settings = BuildSettings(max_clip_s=float(max_clip_s), min_clip_s=float(min_clip_s),
                             frames_per_clip=int(frames_per_clip))
    embedder = embedder or load_clip(get_preset(preset), device=device, dtype=dtype)
    progress = progress or Progress("index build", quiet=True)
    frames_progress = progress.child("frames")
    t0 = time.monotonic()

    with layout.build_lock(index_dir):
        notes = [note] if (note := layout.repair_current(index_dir)) else []
        layout.remove_unpublished(index_dir, keep_staging=True)
        damage, fresh, first_id = _check_published(index_dir, repair, notes)
        for note in notes:
            logger.warning("note: %s", note)  # a repair: shown even with --quiet
        con, resumed = _open_staging(index_dir, embedder.model_id, embedder.dim, settings, fresh=fresh)
        try:
            if first_id:
                catalog.set_meta(con, next_clip_id=max(first_id, int(catalog.read_meta(con)["next_clip_id"])))
            known = catalog.known_files(con)
            diff = diff_against_catalog(find_videos(video_dir), known)
            if not allow_removals:
                check_removals(diff, len(known), video_dir, index_dir)
            todo = diff.todo
            published_before = None if damage else layout.current_generation(index_dir)
            if diff.removed:
                catalog.drop_videos(con, diff.removed)
            if diff.touched:
                catalog.touch_videos(con, diff.touched)
            clips_added = frames_decoded = 0
            progress.update(force=True, files=0, of=len(todo))
            records = run_pipeline(todo, settings, embedder, workers, frames_progress)
            for done, record in enumerate(records, start=1):
                clips_added += len(catalog.commit_video(con, record))
                frames_decoded += record.frames_decoded
                elapsed = max(time.monotonic() - t0, 1e-9)
                progress.update(files=done, of=len(todo), clips=clips_added,
                                frames_per_s=frames_decoded / elapsed, last=os.path.basename(record.file.path))
                if on_video_committed is not None:
                    on_video_committed(record)
            nothing_changed = not (resumed or todo or diff.removed or diff.touched) and published_before is not None
            if nothing_changed:
                index_type = catalog.read_meta(con)["index_type"]
            else:
                index_type = _write_vectors(con, index_dir / layout.STAGING, embedder.dim)
                catalog.set_meta(con, index_type=index_type)
                con.execute("DELETE FROM meta WHERE key = 'base_generation'")
                con.execute("CHECKPOINT")
            counts = con.execute("SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM clips), "
                                 "(SELECT count(*) FROM errors)").fetchone()
        finally:
            con.close()
            frames_progress.close()
        if nothing_changed:
            shutil.rmtree(index_dir / layout.STAGING, ignore_errors=True)
            generation = published_before
        else:
            generation = layout.publish(index_dir, index_dir / layout.STAGING)

    report = BuildReport(str(index_dir), generation, videos=int(counts[0]), new=len(diff.new),
                         changed=len(diff.changed), unchanged=len(diff.unchanged) + len(diff.touched),
                         removed=len(diff.removed), errors=int(counts[2]), clips_added=clips_added,
                         clips=int(counts[1]), frames_decoded=frames_decoded,
                         seconds=round(time.monotonic() - t0, 3), index_type=index_type, notes=notes)
    progress.done(files=len(todo), of=len(todo), clips=report.clips, errors=report.errors,
                  seconds=report.seconds)
    return report
