"""`index.build`: reader → mapper → writer, composed the way clip-retrieval's runner does it.

1. reader  (index/scan.py): list the video files, diff them against the catalog.
2. mapper  (index/mapper.py, or index/ray_engine.py on Ray): each file to a `VideoRecord`.
3. writer  (index/writer.py): commit each record as it comes (the resume point after a crash), then
   update the vector index and publish a new generation.
The stages hand each other the typed values of index/records.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from storyreel.core.errors import UserError
from storyreel.index import layout
from storyreel.index.records import BuildReport, BuildSettings, VideoRecord
from storyreel.index.scan import check_removals, diff_against_catalog, find_videos
from storyreel.index.vectors import TUNING_CAPTIONS
from storyreel.index.writer import IndexWriter, check_published


def build(video_dir, index_dir, settings: BuildSettings | None = None, *, embedder=None, progress=None,
          on_video_committed: Callable[[VideoRecord], None] | None = None) -> BuildReport:
    """Index every video under `video_dir` into `index_dir` (incremental, crash-safe). See module doc.

    settings: the clip settings, model preset, engine, workers, ... (`BuildSettings`; None: its defaults).
    embedder: the CLIP to embed with (default: the preset's, loaded on settings.device/dtype).
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

    settings = settings or BuildSettings()
    video_dir, index_dir = Path(video_dir).resolve(), Path(index_dir).resolve()
    if not video_dir.is_dir():
        raise UserError(f"video folder {video_dir} does not exist or is not a folder")
    settings.check()
    embedder = embedder or load_clip(get_preset(settings.preset), device=settings.device, dtype=settings.dtype)
    progress = progress or Progress("index build", quiet=True)
    t0 = time.monotonic()
    with layout.build_lock(index_dir):
        repairs = check_published(index_dir, settings.repair)
        with IndexWriter(index_dir, embedder.model_id, embedder.dim, settings, repairs) as writer:
            known = writer.known_files()
            diff = diff_against_catalog(find_videos(video_dir), known)
            if not settings.allow_removals:
                check_removals(diff, len(known), video_dir, index_dir)
            writer.drop(diff.removed)
            writer.touch(diff.touched)
            clips_added, frames_decoded = _map_and_commit(diff.todo, settings, embedder, writer, progress,
                                                          on_video_committed)
            done = writer.publish(lambda: embedder.embed_text(list(TUNING_CAPTIONS)))
    report = BuildReport(str(index_dir), done.generation, videos=done.videos, new=len(diff.new),
                         changed=len(diff.changed), unchanged=len(diff.unchanged) + len(diff.touched),
                         removed=len(diff.removed), errors=done.errors, clips_added=clips_added,
                         clips=done.clips, frames_decoded=frames_decoded, seconds=round(time.monotonic() - t0, 3),
                         index_type=done.index_type, index_update=done.index_update, notes=repairs.notes)
    progress.done(files=len(diff.todo), of=len(diff.todo), clips=report.clips, errors=report.errors,
                  seconds=report.seconds)
    return report


def _map_and_commit(files, settings: BuildSettings, embedder, writer: IndexWriter, progress,
                    on_video_committed) -> tuple[int, int]:
    """Map `files` on the settings' engine and commit each record as it comes, in file order.
    Returns (clips added, frames decoded)."""
    if settings.engine == "ray":
        from storyreel.index.ray_engine import run_pipeline
    else:
        from storyreel.index.mapper import run_pipeline
    t0 = time.monotonic()
    clips_added = frames_decoded = 0
    frames_progress = progress.child("frames")
    progress.update(force=True, files=0, of=len(files))
    try:
        for done, record in enumerate(run_pipeline(files, settings, embedder, frames_progress), start=1):
            clips_added += writer.commit(record)
            frames_decoded += record.frames_decoded
            elapsed = max(time.monotonic() - t0, 1e-9)
            progress.update(files=done, of=len(files), clips=clips_added, frames_per_s=frames_decoded / elapsed,
                            last=os.path.basename(record.file.path))
            if on_video_committed is not None:
                on_video_committed(record)
    finally:
        frames_progress.close()
    return clips_added, frames_decoded
