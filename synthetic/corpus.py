"""Synthetic videos with known cuts and camera motion (tests, benchmarks, `storyreel demo`).

Each shot films a seeded random "scene": a large textured image with structure at several scales
(fractal colour noise plus a few solid shapes), so optical flow has texture to track and CLIP has
objects to see. A camera is a crop window over the scene, resampled to the output size:

- pans/tilts slide the window (`speed` = output pixels per frame),
- zooms scale it about the scene centre (`speed` = percent size change per frame),
- `static` keeps it still.

Label convention (CLI.md): labels name the *camera*. In a `pan-left` shot the camera turns left,
so the window slides left and the content in the frame moves right; `tilt-up` moves content down;
`zoom-in` makes content grow outwards from the centre.

Shots are concatenated, so every shot boundary is a hard cut at a known frame. Videos are H.264
yuv420p mp4 (even sizes) written through imageio-ffmpeg; decord reads back exactly the frames written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from storyreel.core.files import write_text_atomic

SHOT_KINDS = ("static", "pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out")

# Direction the crop window moves (dx, dy in output pixels) for a camera turning that way.
_WINDOW_STEP = {"pan-left": (-1, 0), "pan-right": (1, 0), "tilt-up": (0, -1), "tilt-down": (0, 1)}


@dataclass(frozen=True)
class Shot:
    kind: str  # one of SHOT_KINDS
    frames: int
    scene_seed: int  # same seed = same scene (cuts between different seeds are visible cuts)
    speed: float = 3.0  # pans/tilts: output px per frame; zooms: % window size change per frame

    def __post_init__(self):
        if self.kind not in SHOT_KINDS:
            raise ValueError(f"unknown shot kind {self.kind!r}; choose one of {', '.join(SHOT_KINDS)}")
        if self.frames < 1:
            raise ValueError("a shot needs at least one frame")


def scene_image(seed: int, height: int, width: int) -> np.ndarray:
    """A seeded uint8 (height, width, 3) scene: multi-scale colour noise on a palette, plus shapes."""
    import cv2

    rng = np.random.default_rng(seed)
    # Fractal noise: octaves from coarse (a few blobs across the scene) to fine (a few pixels),
    # with amplitude falling off, so there is structure at every scale a camera might see.
    noise = np.zeros((height, width, 3), np.float32)
    cells, amplitude = 3, 1.0
    while cells < max(height, width) / 3:
        grid = rng.standard_normal((cells, cells, 3)).astype(np.float32)
        noise += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        cells, amplitude = cells * 2, amplitude * 0.8
    noise = (noise - noise.mean()) / (noise.std() + 1e-6)
    # A per-scene palette: a base colour plus a colour direction the noise moves along,
    # so two scenes differ clearly in hue/saturation (what a content detector looks at).
    base = rng.uniform(60, 190, size=3)
    tint = rng.uniform(-1, 1, size=(3, 3)) * 35 + np.eye(3) * 20
    image = base + noise @ tint
    # Solid shapes with hard edges, large to small: corners for optical flow, "objects" for CLIP.
    # Their number grows with the area so that every part of the scene has some.
    side = min(height, width)
    for _ in range(int(rng.integers(30, 40) * height * width / 200**2)):
        color = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(side / 40 * 2 ** rng.uniform(0, 3)) + 2
        if rng.random() < 0.5:
            cv2.circle(image, (cx, cy), size, color, thickness=-1)
        else:
            cv2.rectangle(image, (cx - size, cy - size // 2), (cx + size, cy + size // 2), color, thickness=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_shot(shot: Shot, size: tuple[int, int]) -> np.ndarray:
    """Frames uint8 (shot.frames, H, W, 3) of one shot at output `size` = (W, H)."""
    import cv2

    width, height = size
    t = np.arange(shot.frames, dtype=np.float64)
    # Window scale (scene px per output px) and window centre offset (scene px) for each frame.
    if shot.kind in ("zoom-in", "zoom-out"):
        rate = 1.0 + shot.speed / 100.0
        shrink = rate ** -t if shot.kind == "zoom-in" else rate ** -(t[::-1])
        scale = 1.6 * shrink  # widest window is 1.6x the output size, narrowest is 1.6/rate^(T-1)
        offset = np.zeros((shot.frames, 2))
    else:
        scale = np.full(shot.frames, 1.25)  # 1.25 scene px per output px: resampling like a real camera
        dx, dy = _WINDOW_STEP.get(shot.kind, (0, 0))
        travel = (t - t.mean()) * shot.speed * scale[0]
        offset = np.stack([dx * travel, dy * travel], axis=1)
    # The scene must contain every window, with a margin.
    half_w = width * scale.max() / 2 + np.abs(offset[:, 0]).max() + 8
    half_h = height * scale.max() / 2 + np.abs(offset[:, 1]).max() + 8
    scene_w, scene_h = int(np.ceil(2 * half_w)), int(np.ceil(2 * half_h))
    scene = scene_image(shot.scene_seed, scene_h, scene_w)
    frames = np.empty((shot.frames, height, width, 3), np.uint8)
    for i in range(shot.frames):
        s = scale[i]
        # Output pixel (u, v) samples scene point centre + offset + s * ((u, v) - output centre).
        x0 = scene_w / 2 + offset[i, 0] - s * width / 2
        y0 = scene_h / 2 + offset[i, 1] - s * height / 2
        matrix = np.array([[s, 0, x0], [0, s, y0]], np.float64)
        frames[i] = cv2.warpAffine(
            scene, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
    return frames


def write_video(path: str | os.PathLike, shots: list[Shot], fps: float = 24,
                size: tuple[int, int] = (160, 120)) -> list[int]:
    """Write `shots` back to back as an H.264 mp4; returns the cut frames (first frame of shots 2..n)."""
    from storyreel.core.files import atomic_write
    from storyreel.core.video import write_mp4

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size {size} must be even for yuv420p")
    cuts = list(np.cumsum([shot.frames for shot in shots])[:-1].tolist())
    frames = (image for shot in shots for image in render_shot(shot, size))
    atomic_write(path, lambda tmp: write_mp4(tmp, frames, fps=fps, crf=18))  # a killed run leaves no half video
    return cuts


@dataclass(frozen=True)
class VideoTruth:
    """Ground truth of one synthetic video: its shots and the frames where they start."""

    path: str
    fps: float
    width: int
    height: int
    num_frames: int
    cuts: list[int]
    shots: list[Shot]


def make_corpus(
    out_dir: str | os.PathLike, num_videos: int = 3, shots_per_video: int = 3, shot_seconds: float = 2.0,
    fps: float = 24, size: tuple[int, int] = (160, 120), seed: int = 0,
) -> list[VideoTruth]:
    """Write `num_videos` mp4s of seeded random shots (kinds cycle through SHOT_KINDS, every scene new)
    into `out_dir` and a `ground_truth.json` beside them; returns the ground truth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truths, shot_number = [], 0
    for v in range(num_videos):
        shots = []
        for _ in range(shots_per_video):
            kind = SHOT_KINDS[shot_number % len(SHOT_KINDS)]
            frames = int(round(shot_seconds * fps * rng.uniform(0.8, 1.2)))
            shots.append(Shot(kind, frames, scene_seed=seed * 1000 + shot_number))
            shot_number += 1
        path = out / f"video_{v:03d}.mp4"
        cuts = write_video(path, shots, fps=fps, size=size)
        truths.append(VideoTruth(str(path), fps, size[0], size[1], sum(s.frames for s in shots), cuts, shots))
    write_text_atomic(out / "ground_truth.json", json.dumps([asdict(t) for t in truths], indent=1))
    return truths


def mixture_centres(dim: int, centres: int, seed: int = 0) -> np.ndarray:
    """The unit centre directions `clustered_vectors(..., centres, seed=seed)` draws around."""
    rng = np.random.default_rng(seed)
    centre_vectors = rng.standard_normal((centres, dim)).astype(np.float32)
    return centre_vectors / np.linalg.norm(centre_vectors, axis=1, keepdims=True)


def clustered_vectors(n: int, dim: int, centres: int = 1000, noise: float = 0.5, seed: int = 0) -> np.ndarray:
    """L2-normalized float32 (n, dim) vectors around `centres` random directions, like real embeddings
    (uniform random high-dimensional vectors have no near neighbours worth finding). `noise` is the
    spread around a centre relative to the centre's length."""
    rng = np.random.default_rng(seed)
    centre_vectors = rng.standard_normal((centres, dim)).astype(np.float32)  # = mixture_centres(dim, centres, seed)
    centre_vectors /= np.linalg.norm(centre_vectors, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporary memory at 1M x 512
        stop = min(n, start + 100_000)
        chunk = centre_vectors[rng.integers(0, centres, stop - start)]
        chunk += rng.standard_normal(chunk.shape, dtype=np.float32) * (noise / np.sqrt(dim))
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def text_like_queries(n: int, dim: int, centres: int, seed: int = 0, pull: float = 0.3, offset: float = 1.0,
                      noise: float = 0.5, query_seed: int = 1) -> np.ndarray:
    """Out-of-distribution queries for vectors from `clustered_vectors(..., centres, seed=seed)`, shaped
    like CLIP text embeddings against image embeddings (CLIP's modality gap: a caption and its image
    have cosine ~0.3): cosine `pull` with one random centre, the rest a strong offset shared by every
    query set drawn for the same `seed` (weight `offset`) plus per-query noise. L2-normalized float32 (n, dim)."""
    # The shared offset belongs to the "model" (`seed`), not to a query set: CLIP's modality gap is the
    # same for every text it embeds, so tuning queries (the build's caption list) and the queries
    # searched later share it, while their centres and noise (`query_seed`) differ.
    shared = np.random.default_rng([seed, 7]).standard_normal(dim).astype(np.float32)
    shared /= np.linalg.norm(shared)
    rng = np.random.default_rng(query_seed)
    centre_vectors = mixture_centres(dim, centres, seed)
    rest = offset * shared + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    chosen = centre_vectors[rng.integers(0, centres, n)]
    rest -= (rest * chosen).sum(axis=1, keepdims=True) * chosen  # orthogonal to the chosen centre
    rest /= np.linalg.norm(rest, axis=1, keepdims=True)
    queries = pull * chosen + np.sqrt(1 - pull**2) * rest
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def write_long_video(path, seconds: float, fps: float = 24.0, size: tuple[int, int] = (64, 48),
                     shot_seconds: float = 10.0, seed: int = 0) -> int:
    """Encode a long video cheaply and streaming (memory flat in length): `seconds` of `size` frames,
    a hard cut every `shot_seconds` to a new random texture that slides 1 px a frame. Returns the
    frame count. For the long-video test and scripts/bench_long_video.py."""
    from storyreel.core.video import write_mp4

    width, height = size
    total = int(round(seconds * fps))
    shot_frames = max(1, int(round(shot_seconds * fps)))
    rng = np.random.default_rng(seed)

    def frames():
        for first in range(0, total, shot_frames):
            count = min(shot_frames, total - first)
            tile = rng.integers(0, 256, size=(height // 4 + 1, (width + count) // 4 + 2, 3), dtype=np.uint8)
            scene = tile.repeat(4, 0).repeat(4, 1)[:height]
            for i in range(count):
                yield scene[:, i:i + width]

    write_mp4(path, frames(), fps=fps, crf=28)
    return total
