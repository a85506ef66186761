"""Depth as the generator's structure conditioning, with a per-index depth cache.

    conditioning_for_source(source, model=..., size=(256, 256), num_frames=16, index_dir=...)

      1. open the source (video, image, clip id of an index, or a depth video this package wrote)
      2. pick `num_frames` frame indices: with the output's `fps`, a window of the source played at
         `speed` (1: real time) centred in it; without, or when the source is too short for that
         window, spread evenly over all of it (`info["frame_sampling"]` and `info["speed"]` say which)
      3. cache lookup (clip ids only)
      4. decode those frames, predict inverse depth, stabilize over them (depth/temporal.py)
      5. resize to `size` (cover + center crop, aspect kept) -> (F, 3, H, W) float tensor in [0, 1]

Cache: INDEX_DIR/depth_cache/clip{id}_{model}_{H}x{W}_f{F}w{first}-{last}_{fingerprint}.npy holds the
stabilized (F, H, W) depth. The clip's `video_fingerprint` is part of the name, so a re-indexed
(changed) clip misses and gets fresh depth; its stale files are removed when the new one is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.video import spread_indices
from storyreel.depth.media import Source, index_context, open_source, write_npy
from storyreel.depth.model import DepthModel, create_depth_model
from storyreel.depth.temporal import flicker, stabilize

CACHE_DIR = "depth_cache"


def sample_frame_indices(total: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over `total` frames (nearest frame; repeats if total < num_frames)."""
    if total <= 0 or num_frames <= 0:
        raise UserError(f"cannot take {num_frames} frames from a source with {total} frames")
    return spread_indices(total, num_frames).tolist()


@dataclass(frozen=True)
class Playback:
    """How a structure source plays: output frames per second, and the source's speed (1: real time)."""

    fps: float
    speed: float = 1.0


def source_window(total: int, source_fps: float, num_frames: int,
                  playback: Playback | None = None) -> tuple[list[int], float | None]:
    """(frame indices, the speed they play at) of `num_frames` output frames at `playback.fps` from a source
    of `total` frames at `source_fps`: frame k reads source frame start + round(k·speed·source_fps/fps),
    the window centred in the source. A source shorter than that window, or no `playback`, is spread over
    its whole length (its speed then is whatever that gives; None for one frame)."""
    fps = playback.fps if playback else None
    step = playback.speed * source_fps / fps if playback else None
    if step is None or (num_frames - 1) * step + 1 > total:
        indices = sample_frame_indices(total, num_frames)
    else:
        start = (total - 1 - (num_frames - 1) * step) / 2
        indices = [int(round(start + k * step)) for k in range(num_frames)]
    if num_frames < 2 or not fps:
        return indices, None
    return indices, round((indices[-1] - indices[0]) / (num_frames - 1) * fps / source_fps, 3)


def _frame_sampling(total: int, indices: list[int]) -> str:
    """"repeated" (some source frame is read twice), "none" (every source frame once) or "subsampled"."""
    return "repeated" if len(set(indices)) < len(indices) else ("none" if len(indices) == total else "subsampled")


def _resize_cover(frames, size: tuple[int, int]):
    """(F, 1, h, w) tensor -> (F, 1, H, W): scale to cover H x W keeping aspect, center crop."""
    import torch.nn.functional as F

    out_h, out_w = size
    h, w = frames.shape[-2:]
    if (h, w) == (out_h, out_w):
        return frames
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return frames[..., top:top + out_h, left:left + out_w]


def to_conditioning(depth01, size: tuple[int, int], num_frames: int):
    """Normalized depth (F, H, W) in [0, 1] -> torch.FloatTensor (num_frames, 3, H', W') in [0, 1].

    Frames are resampled in time when F != num_frames (evenly spaced, nearest) and in space to
    `size` = (H', W') by cover-resize + center crop, so shapes keep their aspect ratio.
    """
    import torch

    depth01 = torch.as_tensor(np.asarray(depth01, dtype=np.float32))
    if depth01.ndim != 3 or len(depth01) == 0:
        raise ValueError(f"expected depth frames (F, H, W), got shape {tuple(depth01.shape)}")
    picks = sample_frame_indices(len(depth01), num_frames)
    frames = _resize_cover(depth01[picks].unsqueeze(1), tuple(size))
    return frames.clamp_(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()


# -- cache ---------------------------------------------------------------------------------------
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def _cache_prefix(clip_id: int, model_id: str, size, indices: list[int]) -> str:
    return f"clip{clip_id}_{_safe(model_id)}_{size[0]}x{size[1]}_f{len(indices)}w{indices[0]}-{indices[-1]}_"


def _cache_path(index, clip, model_id: str, size, indices: list[int]) -> tuple[Path, str]:
    """(file for this clip version, name prefix shared by every version of the same request)."""
    prefix = _cache_prefix(clip.clip_id, model_id, size, indices)
    return Path(index.path) / CACHE_DIR / f"{prefix}{_safe(str(clip.video_fingerprint))}.npy", prefix


def _store(path: Path, prefix: str, depth01: np.ndarray, index) -> None:
    """Write a cache file and drop stale ones: older fingerprints of this clip, and clips that left
    the index (a re-indexed video's clips get new ids, so their old files would otherwise pile up)."""
    if path.parent.is_dir():
        live = index.clip_ids()
        for cached in path.parent.glob("clip*.npy"):
            clip_id = re.match(r"clip(\d+)_", cached.name)
            gone = clip_id is None or int(clip_id.group(1)) not in live
            if cached != path and (gone or cached.name.startswith(prefix)):
                cached.unlink(missing_ok=True)
    write_npy(path, depth01.astype(np.float32))


def _load_cached(path: Path, shape: tuple[int, ...], info: dict) -> np.ndarray | None:
    """The cached depth at `path` if it is intact: float32 of `shape`, finite, in [0, 1]. A damaged file
    (truncated, tampered, another shape) is deleted and None returned, with a note in info["cache_note"]:
    the caller recomputes and rewrites it."""
    if not path.is_file():
        return None
    try:
        depth01 = np.load(path, allow_pickle=False)
        intact = (isinstance(depth01, np.ndarray) and depth01.dtype == np.float32 and depth01.shape == shape
                  and bool(np.isfinite(depth01).all()) and depth01.min(initial=0) >= 0 and depth01.max(initial=0) <= 1)
    except (OSError, ValueError, EOFError):
        intact = False
    if intact:
        return depth01
    path.unlink(missing_ok=True)
    info["cache_note"] = f"depth cache file {path} was damaged; discarded and recomputed"
    return None


# -- front door ----------------------------------------------------------------------------------
def depth_of_frames(source: Source, indices: list[int], model: DepthModel) -> np.ndarray:
    """Stabilized depth (len(indices), H, W) in [0, 1] for these frames of `source`.

    Each distinct frame is decoded and predicted once, even if `indices` repeats it.
    """
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = source.read(unique.tolist())
    if source.kind == "depth-video":  # already depth (gray): no inference
        depth01 = frames[..., 0].astype(np.float32) / 255.0
    else:
        depth01 = stabilize(model.predict(frames))
    return depth01[inverse]


def conditioning_for_source(source, *, model, size, num_frames: int, index_dir=None, cache: bool = True,
                            source_kind: str = "auto", playback: Playback | None = None):
    """Structure conditioning for the generator: (tensor (F, 3, H, W) in [0, 1], info dict).

    source: video path, image path, clip id (int or digit string; needs `index_dir`), or a depth
    video written by `storyreel depth` (used as is). model: a DepthModel, a registry name, or a function
    returning a DepthModel (called only when inference is needed, e.g. not for depth videos). index_dir: an index
    directory or an already open Index. source_kind: "auto" (a video is depth if its sidecar says so),
    "depth" (a video's gray frames are the depth, near = bright) or "video" (always estimate depth).
    playback: the output's frame rate and the source's speed (`source_window`); None spreads the frames over
    the whole source.
    """
    if source_kind not in ("auto", "depth", "video"):
        raise UserError(f"structure kind must be auto, depth or video (got {source_kind!r})")
    size = (int(size[0]), int(size[1]))
    with index_context(index_dir) as index:
        depth01, info = _depth_for_source(source, index, model, size, num_frames, cache, source_kind, playback)
    info["flicker"] = flicker(depth01)
    return to_conditioning(depth01, size, num_frames), info


def _depth_for_source(source, index, model, size, num_frames, cache, source_kind, playback):
    """(depth (F, H, W) in [0, 1] at the generation size, info) from the cache or the model."""
    src = open_source(source, index)
    if src.kind in ("video", "depth-video") and source_kind != "auto":
        src.kind = "depth-video" if source_kind == "depth" else "video"
    if src.kind == "depth-video":  # `storyreel depth` output: its frames are the depth already
        model, model_id = None, src.depth_model
    else:
        if isinstance(model, str):
            model = create_depth_model(model)
        elif not isinstance(model, DepthModel):
            model = model()  # a factory: load the model only now that it is needed
        model_id = model.model_id
    indices, played = source_window(src.num_frames, src.fps, num_frames, playback)
    info = {
        "source": src.label, "kind": src.kind, "model": model_id, "source_frames": src.num_frames,
        "source_fps": src.fps, "frames": num_frames, "size": list(size), "frame_indices": indices,
        "frame_sampling": _frame_sampling(src.num_frames, indices), "speed": played, "cache": "off",
    }
    if src.kind == "clip":
        info["clip_id"] = int(src.clip.clip_id)
    cache_path, prefix = None, ""
    if cache and src.kind == "clip":
        cache_path, prefix = _cache_path(index, src.clip, model_id, size, indices)
    depth01 = _load_cached(cache_path, (num_frames, *size), info) if cache_path is not None else None
    if depth01 is not None:
        info["cache"] = "hit"
    else:
        full = depth_of_frames(src, indices, model)
        depth01 = to_conditioning(full, size, num_frames)[:, 0].numpy()
        if cache_path is not None:
            _store(cache_path, prefix, depth01, index)
            info["cache"] = "miss"
    return depth01, info

