"""Reading sources (video, image, indexed clip) and writing depth videos, sidecars and sheets.

Videos are decoded with decord in ascending frame order, in batches (seeking cost is set by the
keyframe spacing); images with PIL, EXIF rotation applied. Outputs are written atomically:
a temporary name in the same folder, then os.replace.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from index.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DECODE_BATCH = 32
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
    extra: dict = field(default_factory=dict)


def sidecar_path(video: Path) -> Path:
    """`depth.mp4` -> `depth.mp4.json`: marks a depth video so generation can use it directly."""
    return Path(f"{video}.json")


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
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        num_frames = len(reader)
        first = reader[0].shape if num_frames else None
    except Exception:  # decord raises its own DECORDError / RuntimeError for anything unreadable
        raise UserError(f"cannot read video {path}: not a decodable video file") from None
    if num_frames == 0:
        raise UserError(f"video {path} has 0 frames; nothing to estimate depth for")

    def read(indices: list[int]) -> np.ndarray:
        if first[-1] != 3:  # decord2 returns 4-channel garbage for some narrow widths (e.g. 96 px)
            return _read_with_ffmpeg(path, indices)
        chunks = [reader.get_batch(list(indices[i:i + DECODE_BATCH])).asnumpy()
                  for i in range(0, len(indices), DECODE_BATCH)]
        return np.concatenate(chunks)

    meta = read_sidecar(path)
    kind = "depth-video" if meta else "video"
    return Source(kind, str(path), num_frames, float(reader.get_avg_fps() or 0) or 24.0, read,
                  depth_model=(meta or {}).get("model"))


def _read_with_ffmpeg(path: Path, indices: list[int]) -> np.ndarray:
    """Sequential decode with imageio-ffmpeg, keeping the requested (ascending) frames."""
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = next(frames)["size"]
    wanted, picked = set(indices), {}
    for i, buffer in enumerate(frames):
        if i in wanted:
            picked[i] = np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
        if i >= max(indices):
            break
    frames.close()
    last = picked[max(picked)] if picked else np.zeros((height, width, 3), np.uint8)
    return np.stack([picked.get(i, last) for i in indices])  # decord may count a frame ffmpeg drops


def open_image(path: Path) -> Source:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            frame = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except Exception:
        raise UserError(f"cannot read image {path}: not a readable image file") from None
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


def open_index_arg(index_dir):
    """An index directory (opened with index.open_index) or an already open Index object."""
    if index_dir is None or hasattr(index_dir, "read_frames"):
        return index_dir
    import index

    return index.open_index(index_dir)


def open_source(source, index_dir=None) -> Source:
    """SOURCE as the CLI takes it: a video path, an image path, or a clip id (needs an index)."""
    if is_clip_id(source) and not Path(str(source)).exists():
        index = open_index_arg(index_dir)
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
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def write_atomic_bytes(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def to_uint8_gray(depth01: np.ndarray) -> np.ndarray:
    """(F, H, W) in [0, 1] -> (F, H, W, 3) uint8, near = bright (MiDaS inverse-depth convention)."""
    gray = np.clip(np.rint(np.asarray(depth01) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def write_depth_video(path: Path, depth01: np.ndarray, fps: float, meta: dict) -> None:
    """H.264 mp4 of the depth frames (gray) plus the `<out>.json` sidecar {"kind": "depth", ...}."""
    import imageio_ffmpeg

    frames = to_uint8_gray(depth01)
    # yuv420p needs even sides: repeat the last row/column rather than resample the depth.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")

    def write(tmp: Path) -> None:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
            pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1,
            output_params=["-crf", "12"], ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()

    write_atomic_bytes(path, write)
    sidecar = {"kind": SIDECAR_KIND, **meta}
    write_atomic_bytes(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2) + "\n"))


def write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_atomic_bytes(Path(path), write)


def write_sheet(path: Path, frames: np.ndarray, depth01: np.ndarray, columns: int = 6, width: int = 192) -> None:
    """PNG: up to `columns` evenly spaced source keyframes, each above its depth map."""
    from PIL import Image

    picks = np.unique(np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int))
    height = max(1, round(width * frames.shape[1] / frames.shape[2]))
    sheet = Image.new("RGB", (width * len(picks), height * 2), "black")
    depth_rgb = to_uint8_gray(depth01)
    for col, i in enumerate(picks):
        sheet.paste(Image.fromarray(frames[i]).resize((width, height), Image.BILINEAR), (col * width, 0))
        sheet.paste(Image.fromarray(depth_rgb[i]).resize((width, height), Image.BILINEAR), (col * width, height))
    write_atomic_bytes(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))
