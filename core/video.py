"""Video files: the one frame reader (`probe`, `iter_frames`, `read_frames`, `read_video`) and the
H.264 encoder (`write_mp4`) behind core/writers.py `write_video`.

Containers (mp4, mov, mkv, webm, avi, ...) decode with decord (package `decord2`). decord seeks to the
nearest keyframe and decodes forward, so frames are always requested in ascending order and in
batches. GIFs decode with PIL (see `_read_gif`); `read_video` also reads a folder of PNG frames, so it
reads back everything `write_video` writes. Problems with a file raise `BadVideo` with a short reason
that the index build stores in its errors table and commands wrap into a one-line UserError.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Beyond these a file is not something we can index sensibly (an absurd size or rate).
MIN_SIDE, MAX_SIDE = 16, 16384
MAX_FPS = 1000.0
MIN_FRAMES = 2
TIME_TOLERANCE_S = 1e-3  # frame timestamps this close to i / fps count as a constant frame rate

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


@contextmanager
def _decoder_path(path: str):
    """A name for `path` that decord and OpenCV can open. They take UTF-8 text, and a Linux file name
    can be any bytes: such a file is opened here and handed over as /proc/self/fd/N (the decoder
    opens its own handle, so ours closes once the decoder is open)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        if not os.path.isdir("/proc/self/fd"):
            raise BadVideo("the file name is not valid UTF-8, which the decoder cannot open here; rename it") from None
        fd = os.open(path, os.O_RDONLY)
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    yield str(path)


def _import_decord():
    """decord, loaded after torch and FAISS and without its CUDA preload.

    With decord's libraries loaded first, torch ops running beside a decode thread segfault (seen
    with torch 2.14 + decord2 3.4), and FAISS's k-means too. And on import decord2 dlopens every
    shared library of the `nvidia` pip packages (torch's CUDA wheels) with RTLD_GLOBAL, for its
    GPU decoder, which storyreel does not use: ~420 MB of resident memory in every process that
    decodes. `nvidia` is marked absent while it loads, so it skips them (torch loads what it uses)."""
    import faiss  # noqa: F401
    import torch  # noqa: F401

    if "decord" in sys.modules:
        return sys.modules["decord"]
    saved = sys.modules.get("nvidia", _ABSENT)
    sys.modules["nvidia"] = None  # importlib.util.find_spec("nvidia") is then None
    try:
        import decord
    finally:
        if saved is _ABSENT:
            del sys.modules["nvidia"]
        else:
            sys.modules["nvidia"] = saved
    return decord


_ABSENT = object()


def _reader(path: str, width: int = -1, height: int = -1):
    decord = _import_decord()
    try:
        with _decoder_path(path) as name:
            return decord.VideoReader(name, width=width, height=height, num_threads=1)
    except BadVideo:
        raise
    except Exception as err:  # noqa: BLE001 - decord raises its own DECORDError / RuntimeError variants
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadVideo(f"not a readable video ({first_line[:160]})") from None


def _frame_size(path: str) -> tuple[int, int]:
    """(width, height) from the container, without decoding (decord has no accessor for it)."""
    import cv2

    with _decoder_path(path) as name:
        cap = cv2.VideoCapture(name)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()


def probe(path: str) -> VideoInfo:
    """Frame count, fps and size of a video or gif, or BadVideo saying why it cannot be read."""
    size = os.path.getsize(path)
    if size == 0:
        raise BadVideo("empty file (0 bytes)")
    if _is_gif(path):
        frames, fps = _read_gif(path)
        num_frames, height, width = frames.shape[:3]
    else:
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


def frame_times(path: str, info: VideoInfo) -> np.ndarray:
    """(num_frames + 1,) float seconds: when each frame starts, relative to the first frame, and last
    the time the last frame ends. From the container's timestamps, so variable-frame-rate videos get
    their real times; `i / fps` when the timestamps agree with it within TIME_TOLERANCE_S (a constant
    frame rate: times stay exact), for gifs, and when the timestamps are unusable (not increasing)."""
    even = np.arange(info.num_frames + 1, dtype=np.float64) / info.fps
    if _is_gif(path):
        return even
    try:
        stamps = _reader(path).get_frame_timestamp(np.arange(info.num_frames)).astype(np.float64)
    except Exception:  # noqa: BLE001 - decord's own error types; the even times are the fallback
        return even
    if stamps.shape != (info.num_frames, 2) or not np.all(np.isfinite(stamps)):
        return even
    times = np.append(stamps[:, 0], stamps[-1, 1]) - stamps[0, 0]
    if np.any(np.diff(times) <= 0) or np.max(np.abs(times - even)) < TIME_TOLERANCE_S:
        return even
    return times


def scaled_size(info: VideoInfo, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side`, aspect kept, both even."""
    scale = min(1.0, short_side / min(info.width, info.height))
    return tuple(max(2, round(side * scale / 2) * 2) for side in (info.width, info.height))


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
    if _is_gif(path):
        get_batch = _read_gif(path)[0].__getitem__
    else:
        reader = _reader(path, _decodable_width(width), height)

        def get_batch(chunk: np.ndarray) -> np.ndarray:
            return reader.get_batch(chunk.tolist()).asnumpy()
    for i in range(0, len(indices), batch):
        chunk = indices[i:i + batch]
        try:
            frames = get_batch(chunk)
        except Exception as err:  # noqa: BLE001 - decord's and numpy's errors alike
            raise BadVideo(f"decoding failed near frame {int(chunk[0])} ({str(err).strip()[:160]})") from None
        if frames.shape[1:3] != (height, width):
            import cv2

            frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
        yield chunk, frames


def read_frames(path: str, indices, size: tuple[int, int] | None = None) -> np.ndarray:
    """All requested frames at once (ascending indices), uint8 (N,H,W,3)."""
    parts = [frames for _, frames in iter_frames(path, indices, size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0, 0, 3), np.uint8)


def read_video(path) -> np.ndarray:
    """Every frame, uint8 (F, H, W, 3), of what `write_video` writes: a video file, a gif, or a folder of
    PNG frames (read in name order)."""
    from storyreel.core.images import read_rgb

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise BadVideo("folder has no PNG frames")
        return np.stack([read_rgb(f, what="frame") for f in files])
    info = probe(str(path))
    return read_frames(str(path), np.arange(info.num_frames), (info.width, info.height))


def _is_gif(path) -> bool:
    return str(path).lower().endswith(".gif")


def _read_gif(path) -> tuple[np.ndarray, float]:
    """Every frame of a gif, uint8 (F, H, W, 3), and its frame rate.

    PIL, not decord: decord decodes gifs too, but at its unsafe widths only through a lossy resize,
    and a generated gif (writers.py) must read back exactly as written.
    """
    from PIL import Image, ImageSequence

    from storyreel.core.images import MAX_IMAGE_PIXELS

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height * getattr(image, "n_frames", 1) > 16 * MAX_IMAGE_PIXELS:
                raise BadVideo(f"gif of {image.n_frames} frames of {width}x{height} is too large to decode")
            frames = [(np.asarray(f.convert("RGB")), f.info.get("duration", 0)) for f in ImageSequence.Iterator(image)]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadVideo(f"not a readable gif ({type(err).__name__})") from None
    delay_ms = float(np.mean([ms or 0 for _, ms in frames]))
    fps = 1000.0 / delay_ms if delay_ms > 0 else 10.0  # no delay stored: browsers show 10 frames a second
    return np.stack([f for f, _ in frames]), fps


def write_mp4(path, frames: Iterable[np.ndarray], fps: float, crf: int = 18) -> None:
    """Encode uint8 (H, W, 3) frames as H.264 (yuv420p, plays everywhere) into `path`, streaming.

    yuv420p needs even sides: an odd last row/column is repeated rather than the frame resampled.
    Not atomic by itself: outputs go through core/writers.py `write_video`.
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
