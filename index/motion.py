"""Camera-motion label and magnitude of a clip, from dense optical flow (Open-Sora-style rules).

For a few evenly spaced pairs of consecutive samples, Farneback flow is computed on grey frames
resized to ANALYSIS_WIDTH, and the flow inside a border margin is summarised by a global camera
model: a translation t (the mean flow) plus a zoom rate s (the least-squares fit of flow ≈ s·r
along the position r from the frame centre). Each pair gets a label:

- `static` when the median flow magnitude is below STATIC_FLOOR px/frame;
- `dynamic` when the camera model explains little of the flow (objects moving on their own);
- a zoom when the zoom displacement |s|·mean|r| exceeds |t| (content flowing out = zoom-in);
- otherwise pan/tilt by the angle of t: labels name the *camera* (CLI.md), so content moving
  right means the camera pans left, content moving down means it tilts up.

The clip label is the label of more than half of the pairs, else `dynamic`. The magnitude is the
mean flow length in pixels per source frame at ANALYSIS_WIDTH.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from storyreel.core.video import spread_indices

MOTION_LABELS = ("static", "pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out", "dynamic")

ANALYSIS_WIDTH = 128  # px; magnitudes are reported at this width
STATIC_FLOOR = 0.5  # median px/frame at ANALYSIS_WIDTH (Open-Sora uses 1.0 on larger frames)
MIN_EXPLAINED = 0.5  # camera model must account for this share of the mean flow length
MAX_PAIRS = 8  # sampled frame pairs per clip
BORDER = 0.1  # fraction of each side ignored: content entering/leaving the frame has no true flow


class CameraMotion(NamedTuple):
    label: str
    magnitude: float  # mean flow, pixels per frame at the fixed analysis width


def camera_motion(frames: np.ndarray, frame_step: int = 1) -> CameraMotion:
    """`frames`: uint8 (T, H, W, 3) of one clip, consecutive samples `frame_step` source frames apart."""
    if len(frames) < 2:
        return CameraMotion("static", 0.0)
    grey = _analysis_frames(frames)
    starts = np.unique(spread_indices(len(grey) - 1, min(MAX_PAIRS, len(grey) - 1)))
    labels, magnitudes = [], []
    for i in starts:
        flow = _flow(grey[i], grey[i + 1]) / frame_step
        label, magnitude = _pair_motion(flow)
        labels.append(label)
        magnitudes.append(magnitude)
    values, counts = np.unique(labels, return_counts=True)
    best = int(np.argmax(counts))
    label = str(values[best]) if counts[best] * 2 > len(labels) else "dynamic"
    return CameraMotion(label, float(np.mean(magnitudes)))


def _analysis_frames(frames: np.ndarray) -> list[np.ndarray]:
    import cv2

    height, width = frames.shape[1:3]
    size = (ANALYSIS_WIDTH, max(8, round(height * ANALYSIS_WIDTH / width)))
    return [cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY) for f in frames]


def _flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """(h, w, 2) Farneback flow of `prev` → `nxt`, without the border margin."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(
        prev, nxt, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
    )
    h, w = flow.shape[:2]
    dy, dx = int(h * BORDER), int(w * BORDER)
    return flow[dy:h - dy, dx:w - dx]


def _pair_motion(flow: np.ndarray) -> tuple[str, float]:
    """Label and mean flow length (px/frame) of one frame pair's flow."""
    length = np.linalg.norm(flow, axis=-1)
    mean_length = float(length.mean())
    if np.median(length) < STATIC_FLOOR:
        return "static", mean_length
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.stack([xs - (w - 1) / 2, ys - (h - 1) / 2], axis=-1)  # position from the centre
    t = flow.reshape(-1, 2).mean(axis=0)
    zoom_rate = float((flow * r).sum() / (r * r).sum())  # least-squares s in flow ≈ t + s·r
    zoom_displacement = abs(zoom_rate) * float(np.linalg.norm(r, axis=-1).mean())
    translation = float(np.linalg.norm(t))
    if translation + zoom_displacement < MIN_EXPLAINED * mean_length:
        return "dynamic", mean_length
    if zoom_displacement > translation:
        return ("zoom-in" if zoom_rate > 0 else "zoom-out"), mean_length
    tx, ty = t
    if abs(tx) >= abs(ty):
        return ("pan-left" if tx > 0 else "pan-right"), mean_length
    return ("tilt-up" if ty > 0 else "tilt-down"), mean_length
