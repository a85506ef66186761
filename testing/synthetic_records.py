"""Mapped index records made from given vectors, without any video: large catalogs through the real writer.

tests/test_index_scale.py and scripts/bench_scale.py write synthetic catalogs of thousands to
millions of clips with `storyreel.index.writer.write_videos(index_dir, synthetic_video_records(...))`.
"""

from __future__ import annotations

import numpy as np


def synthetic_video_records(vectors: np.ndarray, clips_per_video: int, *, frames_per_clip: int = 8,
                            first_video: int = 0, motions=None, root: str = "/synthetic", fps: float = 24.0):
    """Yield mapped `VideoRecord`s (what the index mapper returns) for clips whose vectors are given,
    without any video file: `clips_per_video` consecutive rows of `vectors` (n, dim) per video
    `{root}/video_{first_video + i:07d}.mp4`, each clip 2 s long with its vector as all K frame
    vectors. `motions[j]` labels clip j (default "static"). For writing large catalogs through the
    real writer (`storyreel.index.writer.write_videos`) in tests and scripts/bench_scale.py."""
    from storyreel.core.video import VideoInfo
    from storyreel.index.records import ClipRecord, VideoRecord
    from storyreel.index.scan import FileStat

    clip_frames = int(2 * fps)
    for v, start in enumerate(range(0, len(vectors), clips_per_video)):
        part = vectors[start:start + clips_per_video].astype(np.float16).astype(np.float32)
        path = f"{root}/video_{first_video + v:07d}.mp4"
        clips = [ClipRecord(i * clip_frames, (i + 1) * clip_frames,
                            np.linspace(i * clip_frames, (i + 1) * clip_frames - 1, frames_per_clip).astype(np.int64),
                            motions[start + i] if motions is not None else "static", 0.0,
                            i * clip_frames / fps, (i + 1) * clip_frames / fps,
                            frame_vectors=np.repeat(vec[None], frames_per_clip, axis=0), vector=vec)
                 for i, vec in enumerate(part)]
        info = VideoInfo(len(part) * clip_frames, fps, 64, 48)
        yield VideoRecord(FileStat(path, 1000 + v, first_video + v), f"fp{first_video + v}", info, clips)

