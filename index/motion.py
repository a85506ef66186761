"""Camera-motion label and magnitude of a clip. STUB (owned by the `signals` helper)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MOTION_LABELS = ("static", "pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out", "dynamic")


class CameraMotion(NamedTuple):
    label: str
    magnitude: float  # mean flow, pixels per frame at the fixed analysis width


def camera_motion(frames: np.ndarray, frame_step: int = 1) -> CameraMotion:
    """`frames`: uint8 (T, H, W, 3) of one clip, consecutive samples `frame_step` source frames apart."""
    return CameraMotion("static", 0.0)
