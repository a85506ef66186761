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

Slow zooms: a zoom of 1% scale per frame moves content well under STATIC_FLOOR px/frame near the
centre, so every pair reads `static`. For a clip the pairs call static, `clip_zoom_rate` therefore
fits similarity transforms (scale, rotation, translation; RANSAC, so moving objects are outliers)
to corners tracked over spans of the clip's samples. Scale is measured over each span of frames,
where even a slow zoom adds up (1% a frame over 16 frames is 17%), and does not depend on
how large the flow is at any one pair; at least SLOW_ZOOM_RATE per frame makes the clip a zoom.
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
SLOW_ZOOM_RATE = 0.004  # |log scale| per source frame (0.4%) from which a clip the pairs call static is a zoom
MIN_TRACKS = 12  # tracked corners the similarity fit needs
ZOOM_SPAN = 9  # samples per similarity fit (the index hands camera_motion 9 per clip)
MIN_INLIERS = 0.6  # share of the tracks the fitted similarity must explain


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
    if label == "static":
        rate = clip_zoom_rate(grey, frame_step)
        if rate is not None and abs(rate) >= SLOW_ZOOM_RATE:
            label = "zoom-in" if rate > 0 else "zoom-out"
    return CameraMotion(label, float(np.mean(magnitudes)))


def clip_zoom_rate(grey: list[np.ndarray], frame_step: int = 1) -> float | None:
    """log(scale) per source frame of the camera over the clip; > 0 is content growing (zoom-in).

    The clip is cut into spans of ZOOM_SPAN samples; in each, corners of its first frame are tracked
    frame to frame to its last, and a similarity transform is fitted to where they went (a long
    zoom-in pushes corners out of the picture, so spans stay short). None when no span has enough
    tracked corners that one similarity explains (then the motion is not one camera move).
    """
    log_scale, frames = 0.0, 0
    for first in range(0, len(grey) - 1, ZOOM_SPAN - 1):
        span = grey[first:first + ZOOM_SPAN]
        scale = _similarity_scale(span)
        if scale is not None:
            log_scale += np.log(scale)
            frames += (len(span) - 1) * frame_step
    return log_scale / frames if frames else None


def _similarity_scale(grey: list[np.ndarray]) -> float | None:
    """Scale of the similarity transform (RANSAC) from the first frame's corners to the last frame's."""
    import cv2

    h, w = grey[0].shape
    mask = np.zeros((h, w), np.uint8)
    mask[int(h * BORDER):h - int(h * BORDER), int(w * BORDER):w - int(w * BORDER)] = 255
    start = cv2.goodFeaturesToTrack(grey[0], maxCorners=200, qualityLevel=0.01, minDistance=4, mask=mask)
    if start is None or len(start) < MIN_TRACKS:
        return None
    points, alive = start, np.ones(len(start), bool)
    for prev, nxt in zip(grey[:-1], grey[1:]):
        points, status, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, points, None, winSize=(15, 15), maxLevel=2)
        alive &= status.reshape(-1) == 1
    if alive.sum() < MIN_TRACKS:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(start[alive], points[alive], method=cv2.RANSAC,
                                                  ransacReprojThreshold=1.0)
    if matrix is None or inliers.mean() < MIN_INLIERS:
        return None
    return float(np.hypot(matrix[0, 0], matrix[1, 0]))


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
