"""The index build's mapper: one video file in, one `VideoRecord` out (clip-retrieval's mapper stage).

probe → decode small frames → shots → clips → decode the sampled frames → camera motion → CLIP.
`map_video` is a pure function of file, settings and embedder, so it runs on a Ray worker unchanged
(index/ray_engine.py). Locally it is split into `decode_parts` (threads, `settings.workers` of them)
and `embed_clips` (the calling thread), which overlap in `run_pipeline`: while one video is embedded
the next ones decode.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from storyreel.core.video import BadVideo, frame_times, iter_frames, probe, scaled_size, segment_centres
from storyreel.index.records import BuildSettings, ClipRecord, VideoRecord
from storyreel.index.scan import FileStat, entry_error, fingerprint


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


def run_pipeline(files: list[FileStat], settings: BuildSettings, embedder, frames_progress=None):
    """Yield mapped VideoRecords in `files` order; decoding runs ahead in `settings.workers` threads.

    frames_progress: a `Progress` told the frames decoded within the file being decoded.
    """
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(embed_threads(settings.workers))
    try:
        yield from _overlapped(files, settings, embedder, frames_progress)
    finally:
        torch.set_num_threads(torch_threads)


_END = object()  # a decode thread's last item for a file
PARTS_AHEAD = 2  # decoded chunks of clips that may wait per file


def _overlapped(files, settings: BuildSettings, embedder, frames_progress=None):
    """Decode threads put each file's parts (`decode_parts`) on that file's small queue; this thread
    embeds them in file order. Bounded everywhere: at most `workers` + 1 files in flight, each with at
    most PARTS_AHEAD chunks of frames waiting, whatever the length of the videos."""
    workers = max(1, settings.workers)
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

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            pending = deque()
            it = iter(files)

            def submit_next() -> None:
                nxt = next(it, None)
                if nxt is not None:
                    out = queue.Queue(maxsize=PARTS_AHEAD)
                    pool.submit(decode_into, nxt, out)
                    pending.append(out)

            for _ in range(workers + 1):
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
