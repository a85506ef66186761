"""Reading sources (video, image, indexed clip) and writing depth videos, sidecars and sheets.

Videos and gifs are decoded by the core reader (core/video.py), images by the core loader
(core/images.py, EXIF rotation applied). Outputs go through the core writers: `write_video`
(core/writers.py) and `paint_sheet` (core/sheet.py), all atomic.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write, sidecar_path
from storyreel.core.images import IMAGE_SUFFIXES, read_rgb
from storyreel.core.video import spread_indices

SIDECAR_KIND = "depth"


@dataclass
class Source:
    """Frames of one SOURCE: `read(indices)` -> uint8 (F, H, W, 3) for ascending frame indices."""

    kind: str                      # "video" | "image" | "clip" | "depth-video"
    label: str                     # what the user named (path or "clip N")
    num_frames: int
    fps: float
    read: Callable[[list[int]], np.ndarray]
    clip: object | None = None     # the index ClipRow for kind == "clip"
    depth_model: str | None = None  # for kind == "depth-video": the model that made it


def read_sidecar(video: Path) -> dict | None:
    path = sidecar_path(video)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("kind") == SIDECAR_KIND else None


def open_video(path: Path) -> Source:
    """A video file or gif, decoded by the core reader (core/video.py: ascending batches, decord quirks)."""
    from storyreel.core.video import BadVideo, probe, read_frames

    try:
        info = probe(str(path))
    except BadVideo as err:
        raise UserError(f"cannot read video {path}: {err}") from None

    def read(indices: list[int]) -> np.ndarray:
        try:
            return read_frames(str(path), indices)
        except BadVideo as err:
            raise UserError(f"cannot read video {path}: {err}") from None

    meta = read_sidecar(path)
    kind = "depth-video" if meta else "video"
    return Source(kind, str(path), info.num_frames, info.fps, read, depth_model=(meta or {}).get("model"))


def open_image(path: Path) -> Source:
    frame = read_rgb(path, what="source image")
    return Source("image", str(path), 1, 1.0, lambda indices: np.stack([frame for _ in indices]))


def open_clip(clip_id: int, index) -> Source:
    row = index.clip(clip_id)  # UserError "clip id N is not in the index DIR"
    num_frames = int(row.end_frame - row.start_frame)
    if num_frames <= 0:
        raise UserError(f"clip {clip_id} in the index {index.path} has 0 frames; re-index its video")
    return Source("clip", f"clip {clip_id}", num_frames, float(row.fps),
                  lambda indices: index.read_frames(clip_id, list(indices)), clip=row)


def is_clip_id(source) -> bool:
    return isinstance(source, int) or (isinstance(source, str) and source.isdigit())


@contextlib.contextmanager
def index_context(index_dir):
    """Yield an open Index for an index directory (closed afterwards), or pass an open Index or None through."""
    if index_dir is None or hasattr(index_dir, "read_frames"):
        yield index_dir
        return
    from storyreel import index

    with index.open_index(index_dir) as opened:
        yield opened


def open_source(source, index=None) -> Source:
    """SOURCE as the CLI takes it: a video path, an image path, or a clip id (needs an index)."""
    if is_clip_id(source) and not Path(str(source)).exists():
        if index is None:
            raise UserError(f"{source} looks like a clip id: pass the index with --index INDEX_DIR")
        return open_clip(int(source), index)
    path = Path(source)
    if not path.exists():
        raise UserError(f"source {path} does not exist (give a video, an image, or a clip id with --index)")
    if path.is_dir():
        raise UserError(f"source {path} is a folder; give one video or image file")
    return open_image(path) if path.suffix.lower() in IMAGE_SUFFIXES else open_video(path)


# -- writing ---------------------------------------------------------------------------------------
# Unlike `generate`, `storyreel depth` creates its outputs' folders; the depth cache (conditioning.py)
# relies on write_npy doing so.


def to_uint8_gray(depth01: np.ndarray) -> np.ndarray:
    """(F, H, W) in [0, 1] -> (F, H, W, 3) uint8, near = bright (MiDaS inverse-depth convention)."""
    gray = np.clip(np.rint(np.asarray(depth01) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def write_depth_video(path: Path, depth01: np.ndarray, fps: float, meta: dict) -> None:
    """H.264 mp4 of the depth frames (gray) plus the `<out>.json` sidecar {"kind": "depth", ...}."""
    from storyreel.core.writers import write_video

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_video(to_uint8_gray(depth01), path, fps=fps, crf=12,  # crf 12: depth stays near exact
                metadata={"kind": SIDECAR_KIND, **meta})


PNG_BITS = (8, 16)


def depth_png_array(depth01: np.ndarray, bits: int) -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 or uint16 gray, near = bright (full range of the bit depth)."""
    if bits not in PNG_BITS:
        raise UserError(f"--bits must be 8 or 16 (got {bits})")
    top = 2 ** bits - 1
    return np.clip(np.rint(np.asarray(depth01, dtype=np.float64) * top), 0, top).astype(np.uint8 if bits == 8
                                                                                        else np.uint16)


def write_depth_png(path: Path, depth01: np.ndarray, bits: int = 8) -> None:
    """One depth map (H, W) in [0, 1] as a gray PNG of `bits` (8 or 16) bits per pixel."""
    from PIL import Image

    image = Image.fromarray(depth_png_array(depth01, bits))  # uint16 -> mode "I;16", a 16-bit PNG
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_depth_pngs(folder: Path, depth01: np.ndarray, bits: int = 8) -> list[Path]:
    """Every frame of (F, H, W) depth as FOLDER/000000.png, 000001.png, ..."""
    paths = [Path(folder) / f"{i:06d}.png" for i in range(len(depth01))]
    for path, frame in zip(paths, depth01):
        write_depth_png(path, frame, bits)
    return paths


def write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name without it
            np.save(f, array)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def write_sheet(path: Path, frames: np.ndarray, depth01: np.ndarray, columns: int = 6, width: int = 192) -> None:
    """PNG: up to `columns` evenly spaced source keyframes, each above its depth map, `width` px wide."""
    from storyreel.core.sheet import SheetRow, paint_sheet

    picks = np.unique(spread_indices(len(frames), min(columns, len(frames))))
    height = max(1, round(width * frames.shape[1] / frames.shape[2]))
    paint_sheet(path, [SheetRow([frames[picks]]), SheetRow([to_uint8_gray(depth01[picks])])], tile_height=height)
