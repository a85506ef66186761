"""Long clips' effect (generation/long_clips.py: overlap, vidrd, freenoise) on 48-frame toy clips.

Each held-out caption is sampled for LENGTH frames in windows of WINDOW with OVERLAP, once per mode
of settings.LONG_MODES, same seed. Text only (a blank depth clip at τ = 0): a depth hint would set
the content of every frame by itself, and a 16-frame hint looped to 48 frames jumps back at frames 16
and 32, a seam of its own; without one, what holds the clip together across windows is the mode alone.

Two things are measured per mode:
* repetition: toy-CLIP cosine of frames one window stride apart (WINDOW − OVERLAP; reused noise can
  make content recur with that period) against frames at the neighbouring lags (stride ± 1, ± 2);
* seams: the mean absolute pixel change between consecutive frames where the window that makes a
  frame changes (the first frame a new window writes), against the change between all other
  consecutive frames.

    rows = measure(weights_dir, world_dir)   # one row per mode
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from storyreel.training.toyworld.generator import SAMPLING, load_pipeline
from storyreel.training.toyworld.generator_data import read_world

FOLDERS = ("base", "motion_adapter", "controlnet")
LENGTH, WINDOW, OVERLAP = 48, 16, 4
NEIGHBOUR_LAGS = (-2, -1, 1, 2)  # lags around the stride the repetition is compared with


def lag_cosine(embeddings: np.ndarray, lag: int) -> float:
    """Mean cosine of L2-normalized frame embeddings (F, D) `lag` frames apart."""
    return float(np.mean(np.sum(embeddings[:-lag] * embeddings[lag:], axis=1)))


def seam_frames(frames: int, mode: str, steps: int) -> list[int]:
    """Output frames that a window other than the previous frame's writes first (the seams)."""
    from storyreel.generation.long_clips import long_clip_plan

    plans = long_clip_plan(frames, WINDOW, OVERLAP, steps, mode)
    return sorted(min(output for _, output in plan.keep) for plan in plans[1:])


def frame_change(frames: np.ndarray) -> np.ndarray:
    """(F − 1,): mean absolute pixel change (0–255) from frame i − 1 to frame i, for i = 1 … F − 1."""
    pixels = frames.astype(np.float32)
    return np.abs(np.diff(pixels, axis=0)).mean(axis=(1, 2, 3))


def measure(weights_dir: Path, world_dir: Path, clips: int = 2) -> list[dict]:
    """Per long-clip mode over the first `clips` held-out captions (seed = clip number): the repetition
    and seam numbers of the module docstring, averaged over clips."""
    from storyreel.core.models import get_preset
    from storyreel.generation.settings import LONG_MODES, GenerationSettings
    from storyreel.index.embed import load_clip

    pipe = load_pipeline(Path(weights_dir))
    clip_model = load_clip(get_preset("toy"))
    held = read_world(Path(world_dir), "heldout")[:clips]
    size = held[0].frames.shape[1]
    blank = torch.zeros(LENGTH, 1, size, size)
    stride = WINDOW - OVERLAP
    rows = []
    for mode in LONG_MODES:
        at_stride, neighbours, lag_one, seam_change, other_change = [], [], [], [], []
        seams = seam_frames(LENGTH, mode, SAMPLING["steps"])
        for k, clip in enumerate(held):
            settings = GenerationSettings(frames=LENGTH, height=size, width=size, tau=0.0, seed=k, long=mode,
                                          window_frames=WINDOW, overlap_frames=OVERLAP, **SAMPLING)
            frames = pipe(clip.caption, blank, settings).frames
            embeddings = clip_model.embed_images(frames)
            at_stride.append(lag_cosine(embeddings, stride))
            neighbours.append(np.mean([lag_cosine(embeddings, stride + d) for d in NEIGHBOUR_LAGS]))
            lag_one.append(lag_cosine(embeddings, 1))
            change = frame_change(frames)  # change[i - 1]: frame i - 1 -> i
            at_seam = np.zeros(len(change), bool)
            at_seam[[s - 1 for s in seams]] = True
            seam_change.append(change[at_seam].mean())
            other_change.append(change[~at_seam].mean())
        rows.append({"row": f"long {mode}", "frames": LENGTH, "window": WINDOW, "overlap": OVERLAP, "seams": seams,
                     "cosine_lag_stride": _mean(at_stride), "cosine_neighbour_lags": _mean(neighbours),
                     "cosine_lag_1": _mean(lag_one), "change_at_seams": _mean(seam_change, 2),
                     "change_elsewhere": _mean(other_change, 2),
                     "seam_change_ratio": round(float(np.mean(seam_change) / np.mean(other_change)), 3),
                     "clips": len(held), "tau": 0.0, **SAMPLING})
    return rows


def _mean(values, digits: int = 4) -> float:
    return round(float(np.mean(values)), digits)
