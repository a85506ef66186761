"""`index.build`: reader → mapper → writer, the way clip-retrieval is structured.

1. reader  (index/scan.py): list the video files, diff them against the catalog.
2. mapper  (`map_video`, a pure function of file, settings and embedder, so it can run on a Ray
   worker unchanged): probe → decode small frames → shots → clips → decode the sampled frames →
   camera motion → CLIP. It is split into `decode_video` (threads, `workers` of them) and
   `embed_video` (the main thread), which overlap: while one video is embedded the next ones decode.
3. writer  (index/catalog.py + index/layout.py): one DuckDB transaction per video in a staging
   catalog (the resume point after a crash; frame vectors go to one new float16 segment file), then
   the vector index update (index/vectors.py `plan_update`: add to the trained index, compact, or
   retrain), then an atomic publish. Work is proportional to the change, not to the index.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import threading
import time
from collections import deque
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
from storyreel.index.vectors import TUNING_CAPTIONS, apply_changes, encode_offset

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
    index_update: str = ""  # what the build did to the vector index and why (vectors.plan_update)
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


CHUNK_CLIPS = 16  # clips decoded (then embedded) at a time: the mapper's memory is flat in video length


def decode_parts(file: FileStat, settings: BuildSettings, progress=None):
    """Decode stage of the mapper, streamed: shots, clips, sampled frames and camera motion (no CLIP).

    Yields the file's `VideoRecord` first (clips empty), then lists of at most CHUNK_CLIPS
    `ClipRecord`s with their frames, in order. Memory stays flat in video length: pass 1 feeds the
    cut detector a batch of small frames at a time, pass 2 decodes one chunk of clips at a time. If
    the file fails part way, `record.error` is set and nothing more is yielded (drop what came).
    progress: a `Progress` (core/progress.py) told the frames decoded within this file.
    """
    from storyreel.index.motion import camera_motion
    from storyreel.index.shots import CutDetector, split_into_clips

    record = VideoRecord(file, "")
    if file.error is not None:  # found by the scan: dangling link, loop, not a regular file, ...
        record.error = file.error
        yield record
        return
    try:
        record.fingerprint = fingerprint(file.path)
        info = record.info = probe(file.path)
        times = frame_times(file.path, info)
    except Exception as err:  # noqa: BLE001 - see _decode_error
        record.error = _decode_error(err)
    yield record
    if record.error is not None:
        return
    try:
        # Pass 1: every frame, small, for the cut detector (a batch at a time).
        detector = CutDetector()
        for _, batch in iter_frames(file.path, np.arange(info.num_frames), scaled_size(info, settings.shot_short_side)):
            detector.add(batch)
            record.frames_decoded += len(batch)
            if progress is not None:
                progress.update(frames=record.frames_decoded, of=info.num_frames)
        num_frames = record.frames_decoded
        spans = split_into_clips(num_frames, detector.cuts(), info.fps, settings.min_clip_s, settings.max_clip_s)
        if not spans:
            raise BadVideo(f"no clip: {num_frames / info.fps:.2f} s of video is shorter than the "
                           f"minimum clip length {settings.min_clip_s:g} s")
        # Pass 2: only the frames CLIP and the motion analysis need, ascending, at analysis size.
        plans = []
        for start, end in spans:
            embed_at = segment_centres(start, end, settings.frames_per_clip)
            motion_at, step = motion_indices(start, end, info.fps, settings.motion_frames)
            plans.append((start, end, embed_at, motion_at, step))
        for first in range(0, len(plans), CHUNK_CLIPS):
            chunk = plans[first:first + CHUNK_CLIPS]
            wanted = np.unique(np.concatenate([np.concatenate([p[2], p[3]]) for p in chunk]))
            frames = {}
            for idx, batch in iter_frames(file.path, wanted, scaled_size(info, settings.analysis_short_side)):
                frames.update(zip(idx.tolist(), batch))
            record.frames_decoded += len(wanted)
            clips = []
            for start, end, embed_at, motion_at, step in chunk:
                motion = camera_motion(np.stack([frames[i] for i in motion_at.tolist()]), frame_step=step)
                clips.append(ClipRecord(start, end, embed_at, motion.label, float(motion.magnitude),
                                        float(times[start]), float(times[end]),
                                        frames=np.stack([frames[i] for i in embed_at.tolist()])))
            del frames
            yield clips
    except Exception as err:  # noqa: BLE001 - see _decode_error
        record.error = _decode_error(err)


def _decode_error(err: Exception) -> str:
    """The errors-table reason for a file that failed: one strange file must not stop the build."""
    if isinstance(err, BadVideo):
        return str(err)
    if isinstance(err, OSError):  # unreadable, or deleted/replaced while the build runs
        return entry_error(err)
    return f"decoding failed ({type(err).__name__}: {str(err).strip()[:160]})"  # the type names the bug


def decode_video(file: FileStat, settings: BuildSettings, progress=None) -> VideoRecord:
    """The whole decode stage for one file: its record with every clip's frames (see `decode_parts`)."""
    parts = decode_parts(file, settings, progress)
    record = next(parts)
    for clips in parts:
        record.clips += clips
    if record.error is not None:
        record.clips = []
    return record


def embed_clips(clips: list[ClipRecord], embedder) -> list[ClipRecord]:
    """Embed stage of the mapper: per-frame CLIP vectors and their normalized mean, per clip (frames dropped)."""
    if not clips:
        return clips
    from storyreel.index.layout import FRAMES_DTYPE
    from storyreel.index.vectors import clip_vectors

    k = len(clips[0].frames)
    vectors = embedder.embed_images(np.concatenate([c.frames for c in clips]))
    # Rounded to the index's float16 storage here, so the mapper's output is exactly what is stored.
    vectors = np.asarray(vectors).astype(FRAMES_DTYPE).astype(np.float32)
    for i, clip in enumerate(clips):
        clip.frame_vectors = vectors[i * k:(i + 1) * k]
        clip.vector = clip_vectors(clip.frame_vectors[None])[0]
        clip.frames = None
    return clips


def embed_video(record: VideoRecord, embedder) -> VideoRecord:
    """Embed stage for a whole decoded record (see `embed_clips`)."""
    embed_clips(record.clips, embedder)
    return record


def map_video(file: FileStat, settings: BuildSettings, embedder, progress=None) -> VideoRecord:
    """The whole mapper for one file (what a Ray worker runs), one chunk of clips in memory at a time."""
    parts = decode_parts(file, settings, progress)
    record = next(parts)
    for clips in parts:
        record.clips += embed_clips(clips, embedder)
    if record.error is not None:
        record.clips = []
    return record


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


_END = object()  # a decode thread's last item for a file
PARTS_AHEAD = 2  # decoded chunks of clips that may wait per file


def _overlapped(files, settings, embedder, workers, frames_progress=None):
    """Decode threads put each file's parts (`decode_parts`) on that file's small queue; this thread
    embeds them in file order. Bounded everywhere: at most `workers` + 1 files in flight, each with at
    most PARTS_AHEAD chunks of frames waiting, whatever the length of the videos."""
    cancelled = threading.Event()

    def decode_into(file, out: queue.Queue) -> None:
        def put(item) -> bool:
            while not cancelled.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for part in decode_parts(file, settings, frames_progress):
                if not put(part):
                    return
            put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            put(err)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        try:
            pending = deque()
            it = iter(files)

            def submit_next() -> None:
                nxt = next(it, None)
                if nxt is not None:
                    out = queue.Queue(maxsize=PARTS_AHEAD)
                    pool.submit(decode_into, nxt, out)
                    pending.append(out)

            for _ in range(max(1, workers) + 1):
                submit_next()
            while pending:
                out = pending.popleft()
                record = out.get()
                if isinstance(record, BaseException):
                    raise record
                submit_next()
                while (part := out.get()) is not _END:
                    if isinstance(part, BaseException):
                        raise part
                    record.clips += embed_clips(part, embedder)
                if record.error is not None:
                    record.clips = []
                yield record
        finally:
            cancelled.set()


# --- writer / runner ------------------------------------------------------------------------------

def _open_staging(index_dir: Path, model_id: str, dim: int, settings: BuildSettings, fresh: bool = False):
    """(connection, resumed, segment file): a writable staging catalog based on the current generation
    (an empty one if `fresh`), resumed if a killed build left one (then it may hold commits the
    published generation lacks), and the segment file this build appends frame vectors to."""
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
        catalog.create_catalog(con, model_id, dim, settings.to_dict())
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
    # The catalog, or frame vectors it points at, are lost: decode every video again.
    fresh = any(file == layout.CATALOG or file.startswith("frames-") for file in damage)
    first_id = repair_files.next_id_after_vectors(index_dir, generation) if fresh else 0
    for file, problem in damage.items():
        notes.append(f"{generation}/{file} was damaged ({problem}); " + (
            f"rebuilt it by decoding every video again (new clip ids start at {first_id})" if fresh and
            file != layout.VECTORS else "rebuilt it from the frame vectors"))
    return damage, fresh, first_id


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


def _publish_files(con, index_dir: Path, staging: Path, dim: int, settings: BuildSettings,
                   segment: layout.SegmentFile, text_queries=None, damage: dict | None = None) -> tuple[str, str]:
    """Finish the staging folder: link the unchanged files of the published generation, bring the
    vector index up to date (vectors.plan_update), record it in meta. Returns (index type, update).
    `text_queries()`: text-like query vectors to tune a new index's search parameters with.
    `damage`: the published generation's damaged files (_check_published); a damaged vector index is
    rebuilt from the frame vectors (`_segment_vectors`), never linked."""
    import faiss

    from storyreel.index.vectors import build_vector_index, choose_index_spec, index_family, plan_update

    meta = catalog.read_meta(con)
    base = layout.current_generation(index_dir)
    segments = [s for (s,) in con.execute("SELECT DISTINCT segment FROM clips ORDER BY segment").fetchall()]
    vectors_ok = bool(meta["index_type"]) and layout.VECTORS not in (damage or {})
    if base:
        layout.link_into(index_dir / base, [layout.frames_name(s) for s in segments if s != segment.segment]
                         + ([layout.VECTORS] if vectors_ok else []), staging)
    if segment.rows == 0 or segment.segment not in segments:  # nothing of this build's segment is live
        segment.close()
        (staging / layout.frames_name(segment.segment)).unlink(missing_ok=True)
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
    catalog.set_meta(con, index_type=index_type, trained_for=trained_for, index_update=reason,
                     next_segment=segment.segment + 1)
    return index_type, reason


def _removed_ids(con) -> np.ndarray:
    return np.asarray(con.execute("SELECT clip_id FROM removed").fetchnumpy()["clip_id"], np.int64)


def _finish(con, index_dir: Path, settings: BuildSettings, dim: int, segment: layout.SegmentFile,
            nothing_changed: bool, text_queries=None, damage: dict | None = None):
    """Publish the staging folder as the next generation (or drop it when nothing changed).
    Returns (generation, index type, index update, (videos, clips, errors) counts). Closes `con`."""
    staging = index_dir / layout.STAGING
    if nothing_changed:
        meta = catalog.read_meta(con)
        index_type, index_update = meta["index_type"], "unchanged"
    else:
        index_type, index_update = _publish_files(con, index_dir, staging, dim, settings, segment, text_queries,
                                                  damage)
        con.execute("DELETE FROM meta WHERE key = 'base_generation'")
        con.execute("CHECKPOINT")
    counts = con.execute("SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM clips), "
                         "(SELECT count(*) FROM errors)").fetchone()
    segment.close()
    con.close()
    if nothing_changed:
        shutil.rmtree(staging, ignore_errors=True)
        generation = layout.current_generation(index_dir)
    else:
        generation = layout.publish(index_dir, staging)
    return generation, index_type, index_update, counts


def write_videos(index_dir, records, *, model_id: str, dim: int, settings: BuildSettings | None = None,
                 removed: list[str] = (), tune_queries: np.ndarray | None = None) -> BuildReport:
    """The writer alone: commit already-mapped `VideoRecord`s (and drop the `removed` paths), publish.
    `tune_queries`: text-like query vectors a new vector index is tuned with (build uses the CLIP text
    encoder on vectors.TUNING_CAPTIONS).

    What `build` does after its mapper, for records made elsewhere: scripts/bench_scale.py and the
    tests write large synthetic catalogs through it without decoding any video.
    """
    settings = settings or BuildSettings()
    index_dir = Path(index_dir).resolve()
    t0 = time.monotonic()
    clips_added = count = 0
    with layout.build_lock(index_dir):
        layout.remove_unpublished(index_dir, keep_staging=True)
        con, _, segment = _open_staging(index_dir, model_id, dim, settings)
        try:
            if removed:
                catalog.drop_videos(con, list(removed))
            for record in records:
                clips_added += len(catalog.commit_video(con, record, segment))
                count += 1
            generation, index_type, index_update, counts = _finish(
                con, index_dir, settings, dim, segment, False,
                None if tune_queries is None else (lambda: tune_queries))
        finally:
            segment.close()
            con.close()
    return BuildReport(str(index_dir), generation, videos=int(counts[0]), new=count, changed=0, unchanged=0,
                       removed=len(removed), errors=int(counts[2]), clips_added=clips_added, clips=int(counts[1]),
                       frames_decoded=0, seconds=round(time.monotonic() - t0, 3), index_type=index_type,
                       index_update=index_update)


def build(video_dir, index_dir, preset=None, *, max_clip_s: float = 8.0, min_clip_s: float = 1.0,
          frames_per_clip: int = 8, workers: int = 1, embedder=None, progress=None,
          on_video_committed: Callable[[VideoRecord], None] | None = None, allow_removals: bool = False,
          repair: bool = False, device=None, dtype=None, engine: str = "local", address: str | None = None
          ) -> BuildReport:
    """Index every video under `video_dir` into `index_dir` (incremental, crash-safe). See module doc.

    preset: a name or a ModelPreset (its CLIP embeds); device/dtype: where and in what precision
    (storyreel.core.devices' defaults: CUDA in fp16 when present).
    allow_removals: let the build drop more than half of the index's videos (or all of them) when they
    are gone from `video_dir`; without it such a build stops first (scan.check_removals).
    repair: rebuild damaged index files from what is intact (index/repair.py); without it a build over
    a damaged index stops with one line.
    engine: "local" (decode threads + CLIP here) or "ray" (the mapper on Ray workers, index/ray_engine.py;
    `address` names the cluster, default a local Ray with `workers` CPUs); the writer is this process.

    progress: a `Progress` (core/progress.py) told files done and, in a child bar, the frames
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
    if engine not in ("local", "ray"):
        raise UserError(f"unknown --engine {engine!r}; choose local or ray")
    if address is not None and engine != "ray":
        raise UserError("--address names a Ray cluster; use it with --engine ray")
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
        con, resumed, segment = _open_staging(index_dir, embedder.model_id, embedder.dim, settings, fresh=fresh)
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
            if engine == "ray":
                from storyreel.index import ray_engine

                records = ray_engine.run_pipeline(todo, settings, get_preset(preset).name, embedder.model_id,
                                                  address, workers)
            else:
                records = run_pipeline(todo, settings, embedder, workers, frames_progress)
            for done, record in enumerate(records, start=1):
                clips_added += len(catalog.commit_video(con, record, segment))
                frames_decoded += record.frames_decoded
                elapsed = max(time.monotonic() - t0, 1e-9)
                progress.update(files=done, of=len(todo), clips=clips_added,
                                frames_per_s=frames_decoded / elapsed, last=os.path.basename(record.file.path))
                if on_video_committed is not None:
                    on_video_committed(record)
            nothing_changed = not (resumed or todo or diff.removed or diff.touched) and published_before is not None
            generation, index_type, index_update, counts = _finish(
                con, index_dir, settings, embedder.dim, segment, nothing_changed,
                lambda: embedder.embed_text(list(TUNING_CAPTIONS)), damage)
        finally:
            segment.close()
            con.close()
            frames_progress.close()

    report = BuildReport(str(index_dir), generation, videos=int(counts[0]), new=len(diff.new),
                         changed=len(diff.changed), unchanged=len(diff.unchanged) + len(diff.touched),
                         removed=len(diff.removed), errors=int(counts[2]), clips_added=clips_added,
                         clips=int(counts[1]), frames_decoded=frames_decoded,
                         seconds=round(time.monotonic() - t0, 3), index_type=index_type,
                         index_update=index_update, notes=notes)
    progress.done(files=len(todo), of=len(todo), clips=report.clips, errors=report.errors,
                  seconds=report.seconds)
    return report
