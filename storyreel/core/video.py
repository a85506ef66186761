"""Video files: probe and decode with decord (package `decord2`, ascending batches), and encode
H.264 mp4 with `write_mp4`, the one video writer every package uses.

decord seeks to the nearest keyframe and decodes forward, so frames are always requested in
ascending order and in batches (REFERENCE.md). Problems with a file raise `BadVideo` with a short
reason that the build stores in the errors table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

# Beyond these a file is not something we can index sensibly ("absurd" in the issue).
MIN_SIDE, MAX_SIDE = 16, 16384
MAX_FPS = 1000.0
MIN_FRAMES = 2

# decord2 3.4 fails ("DECORDArrayCopyFromTo: The size must exactly match") for these output widths,
# whether scaled to or native (found by probing every width up to 400). We decode one of them at
# the next safe width and resize back.
DECORD_BAD_WIDTHS = frozenset({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96, 144})


class BadVideo(Exception):
    """A file the build cannot index; str(err) is the reason stored in the errors table."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


def _reader(path: str, width: int = -1, height: int = -1):
    # torch must be loaded before decord: with decord's libraries loaded first, torch ops running
    # beside a decode thread segfault (seen with torch 2.14 + decord2 3.4).
    import torch  # noqa: F401
    import decord

    try:
        return decord.VideoReader(str(path), width=width, height=height, num_threads=1)
    except Exception as err:  # decord raises its own DECORDError / RuntimeError variants
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadVideo(f"not a readable video ({first_line[:160]})") from None


def _frame_size(path: str) -> tuple[int, int]:
    """(width, height) from the container, without decoding (decord has no accessor for it)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()


def probe(path: str) -> VideoInfo:
    """Frame count, fps and size of a video, or BadVideo saying why it cannot be indexed."""
    size = os.path.getsize(path)
    if size == 0:
        raise BadVideo("empty file (0 bytes)")
    reader = _reader(path)
    num_frames = len(reader)
    fps = float(reader.get_avg_fps())
    width, height = _frame_size(path)
    if num_frames < MIN_FRAMES:
        raise BadVideo(f"has {num_frames} frame(s); at least {MIN_FRAMES} are needed")
    if not (0 < fps <= MAX_FPS):
        raise BadVideo(f"absurd frame rate {fps:g} fps")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise BadVideo(f"absurd frame size {width}x{height}")
    return VideoInfo(num_frames, fps, width, height)


def scaled_size(info: VideoInfo, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side`, aspect kept, both even."""
    scale = min(1.0, short_side / min(info.width, info.height))
    even = lambda v: max(2, int(round(v * scale / 2)) * 2)  # noqa: E731 - tiny helper
    return even(info.width), even(info.height)


def spread_indices(total: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over `total` frames, nearest frame, first and last included
    (indices repeat when count > total). The one rule for resampling a clip to a frame count."""
    return np.linspace(0, total - 1, count).round().astype(np.int64)


def segment_centres(start: int, end: int, count: int) -> np.ndarray:
    """`count` frame indices over [start, end): the centres of `count` equal segments (keyframes)."""
    return (start + (np.arange(count) + 0.5) * (end - start) / count).astype(np.int64)


def _decodable_width(width: int) -> int:
    while width in DECORD_BAD_WIDTHS:
        width += 2
    return width


def iter_frames(path: str, indices: list[int] | np.ndarray, size: tuple[int, int] | None = None,
                batch: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices, uint8 frames (B,H,W,3)) for ascending `indices`, at `size` (w, h) or source size."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and np.any(np.diff(indices) < 0):
        raise ValueError("frame indices must be ascending")
    if size is None:
        info = probe(path)
        size = (info.width, info.height)
    width, height = size
    reader = _reader(path, _decodable_width(width), height)
    for i in range(0, len(indices), batch):
        chunk = indices[i:i + batch]
        try:
            frames = reader.get_batch(chunk.tolist()).asnumpy()
        except Exception as err:
            raise BadVideo(f"decoding failed near frame {int(chunk[0])} ({str(err).strip()[:160]})") from None
        if frames.shape[2] != width:
            import cv2

            frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
        yield chunk, frames


def read_frames(path: str, indices, size: tuple[int, int] | None = None) -> np.ndarray:
    """All requested frames at once (ascending indices), uint8 (N,H,W,3)."""
    parts = [frames for _, frames in iter_frames(path, indices, size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0, 0, 3), np.uint8)


def write_mp4(path, frames: Iterable[np.ndarray], fps: float, crf: int = 18) -> None:
    """Encode uint8 (H, W, 3) frames as H.264 (yuv420p, plays everywhere) into `path`, streaming.

    yuv420p needs even sides: an odd last row/column is repeated rather than the frame resampled.
    Callers make the write atomic (index/files.py).
    """
    import imageio_ffmpeg

    writer = None
    try:
        for frame in frames:
            pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            if writer is None:
                writer = imageio_ffmpeg.write_frames(
                    str(path), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-crf", str(crf)],
                    ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
    finally:
        if writer is not None:
            writer.close()
