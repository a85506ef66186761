"""Text2Video-Zero's effects (generation/zero.py, backend "t2v-zero") on held-out toy captions.

Text only, each caption is sampled as an 8-frame clip at a few motion strengths λ (same seed), and
frame by frame with a different seed per frame (frames = 1: the image model with nothing tying the
frames together). Two effects:

* motion dynamics: frame k's latent is frame 1's moved by λ·(k−1)·δ pixels of a 512×512 flow grid
  (δ = motion_field), content moving by −δ; on a SIZE-pixel frame that is a content shift of
  −λ·(k−1)·δ·SIZE/512 pixels. The measured shift of frame k against frame 1 is the integer shift
  that best matches them (`content_shift`); the row gives the slope of measured on expected shift;
* consistency: consecutive frames' toy-CLIP cosine and mean absolute pixel change, against the
  independently sampled frames.

    rows = measure(weights_dir, world_dir)   # one row per motion strength, one for independent frames
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.training.toyworld.generator import SAMPLING, load_pipeline
from storyreel.training.toyworld.generator_data import read_world
from storyreel.training.toyworld.long_clips import frame_change, lag_cosine

FOLDERS = ("base", "controlnet")
FRAMES = 8
STRENGTHS = (0.0, 12.0, 24.0)  # λ; 12 is GenerationSettings' default
MOTION_FIELD = (1.0, 1.0)
SEARCH_RADIUS = 24  # pixels; the largest expected shift (λ = 24, frame 8) is 21


def content_shift(first: np.ndarray, frame: np.ndarray, radius: int = SEARCH_RADIUS) -> tuple[int, int]:
    """(dx, dy): the integer shift with frame[y, x] ≈ first[y − dy, x − dx] (content moved right/down by
    dx/dy), the one with the least mean squared difference over the frames' overlap."""
    a, b = first.astype(np.float32).mean(-1), frame.astype(np.float32).mean(-1)
    height, width = a.shape
    best, best_error = (0, 0), np.inf
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            moved = b[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)]
            source = a[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
            error = float(np.mean((moved - source) ** 2))
            if error < best_error:
                best, best_error = (dx, dy), error
    return best


def expected_shift(strength: float, frame_index: int, size: int) -> np.ndarray:
    """(dx, dy) content shift of frame `frame_index` (0 = frame 1) on a `size`-pixel frame, as zero.py moves it."""
    from storyreel.generation.zero import FLOW_GRID

    return -strength * frame_index * np.array(MOTION_FIELD) * size / FLOW_GRID


def consistency(frames: np.ndarray, clip_model) -> tuple[float, float]:
    """(toy-CLIP cosine, mean absolute pixel change) of consecutive frames."""
    return lag_cosine(clip_model.embed_images(frames), 1), float(frame_change(frames).mean())


def independent_frames(pipe, caption: str, frames: int, clip_number: int) -> np.ndarray:
    """`frames` frames of `caption`, each sampled on its own by the image model (`pipe`: the t2v-zero
    backend at frames = 1 is its plain text-to-image pipeline), seed 1000·clip_number + frame."""
    from storyreel.generation.settings import GenerationSettings

    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    settings = GenerationSettings(frames=1, height=size, width=size, **SAMPLING)
    return np.concatenate([pipe(caption, None, settings.replace(seed=1000 * clip_number + f)).frames
                           for f in range(frames)])


def measure(weights_dir: Path, world_dir: Path, clips: int = 6) -> list[dict]:
    """Per motion strength over the first `clips` held-out captions (seed = clip number): the slope of
    the measured content shift on the expected one (1: moves as asked; 0: still), the mean absolute
    error of the shift in pixels, and consecutive-frame consistency; then the same consistency for
    frames sampled one at a time (seed 1000·clip + frame)."""
    from storyreel.core.models import get_preset
    from storyreel.generation.settings import GenerationSettings
    from storyreel.index.embed import load_clip

    pipe = load_pipeline(Path(weights_dir), backend="t2v-zero")
    clip_model = load_clip(get_preset("toy"))
    held = read_world(Path(world_dir), "heldout")[:clips]
    size = held[0].frames.shape[1]
    base = GenerationSettings(frames=FRAMES, height=size, width=size, motion_field=MOTION_FIELD, **SAMPLING)
    rows = []
    for strength in STRENGTHS:
        measured, expected, cosines, changes = [], [], [], []
        for k, clip in enumerate(held):
            frames = pipe(clip.caption, None, base.replace(seed=k, motion_strength=strength)).frames
            measured += [content_shift(frames[0], frames[i]) for i in range(1, FRAMES)]
            expected += [expected_shift(strength, i, size) for i in range(1, FRAMES)]
            cosine, change = consistency(frames, clip_model)
            cosines, changes = cosines + [cosine], changes + [change]
        measured, expected = np.array(measured, np.float64), np.array(expected)
        last = measured[FRAMES - 2::FRAMES - 1].mean(0)  # frame 8 of every clip
        slope = float((measured * expected).sum() / (expected ** 2).sum()) if strength else None
        rows.append({"row": f"t2v-zero motion strength {strength:g}", "motion_strength": strength,
                     "expected_shift_frame_8_px": [round(float(v), 2) for v in expected[FRAMES - 2]],
                     "measured_shift_frame_8_px": [round(float(v), 2) for v in last],
                     "shift_slope": None if slope is None else round(slope, 3),
                     "shift_abs_error_px": round(float(np.abs(measured - expected).mean()), 2),
                     "consecutive_cosine": round(float(np.mean(cosines)), 4),
                     "consecutive_change": round(float(np.mean(changes)), 2), **SAMPLING})
    cosines, changes = [], []
    for k, clip in enumerate(held):
        cosine, change = consistency(independent_frames(pipe, clip.caption, FRAMES, k), clip_model)
        cosines, changes = cosines + [cosine], changes + [change]
    rows.append({"row": "independent frames (frames=1, a seed each)",
                 "consecutive_cosine": round(float(np.mean(cosines)), 4),
                 "consecutive_change": round(float(np.mean(changes)), 2), **SAMPLING})
    return rows
