"""Shot boundaries and clip splitting. STUB (owned by the `signals` helper; replaced with the real detector)."""

from __future__ import annotations

import numpy as np


def detect_cuts(frames: np.ndarray) -> list[int]:
    """Frame indices (sorted, > 0) where a new shot begins. `frames`: uint8 (N, h, w, 3), every frame, downscaled."""
    return []


def split_into_clips(num_frames: int, cuts: list[int], fps: float, min_s: float = 1.0, max_s: float = 8.0) -> list[tuple[int, int]]:
    """[start, end) frame ranges: no range spans a cut, each between min_s and max_s seconds long."""
    bounds = [0, *cuts, num_frames]
    max_len = max(1, int(round(max_s * fps)))
    clips = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        for a in range(s, e, max_len):
            b = min(a + max_len, e)
            if (b - a) >= min_s * fps:
                clips.append((a, b))
    return clips
