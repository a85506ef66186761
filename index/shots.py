"""Shot boundaries (hard cuts) and splitting shots into clips.

`detect_cuts` follows PySceneDetect's AdaptiveDetector: the *content value* of frame i is the mean
absolute HSV difference to frame i-1 (ContentDetector's score, averaged over H, S, V); a cut starts
at frame i when that value is `adaptive_threshold` times the average content value of the
`window` frames on either side, and also above an absolute floor `min_content` (so noise in a
still shot never counts). Comparing against the neighbourhood, not a fixed threshold, keeps fast
camera motion (uniformly high values) from firing cuts. A cut closer than `min_shot_frames` to the
previous one is dropped (PySceneDetect's min_scene_len). Frames are first shrunk to
`ANALYSIS_WIDTH` (area averaging): small frames average out moving texture, while a cut still
changes the whole picture, and the cost stays fixed whatever size the caller decoded at.
"""

from __future__ import annotations

import numpy as np

ADAPTIVE_THRESHOLD = 3.0  # PySceneDetect AdaptiveDetector default
MIN_CONTENT = 15.0  # PySceneDetect AdaptiveDetector min_content_val (HSV units 0..255)
WINDOW = 2  # frames each side in the rolling average (PySceneDetect window_width)
MIN_SHOT_FRAMES = 15  # PySceneDetect min_scene_len
ANALYSIS_WIDTH = 48


def _small_hsv(frames: np.ndarray) -> np.ndarray:
    """int16 (N, h, w, 3) HSV of the frames shrunk to ANALYSIS_WIDTH (area averaging)."""
    import cv2

    height, width = frames.shape[1:3]
    size = (width, height)
    if width > ANALYSIS_WIDTH:
        size = (ANALYSIS_WIDTH, max(1, round(height * ANALYSIS_WIDTH / width)))
    return np.stack([
        cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV_FULL) for f in frames
    ]).astype(np.int16)


class CutDetector:
    """`detect_cuts` fed a video in order, a batch at a time: memory is one small frame plus one float
    per frame, whatever the video's length (a 2-hour film is ~170k floats)."""

    def __init__(self):
        self._previous: np.ndarray | None = None  # HSV of the last frame seen
        self._values: list[np.ndarray] = []

    def add(self, frames: np.ndarray) -> None:
        """The next frames of the video, uint8 (B, h, w, 3)."""
        if len(frames) == 0:
            return
        hsv = _small_hsv(frames)
        if self._previous is not None:
            hsv_with_previous = np.concatenate([self._previous[None], hsv])
            self._values.append(np.abs(np.diff(hsv_with_previous, axis=0)).mean(axis=(1, 2, 3)))
        else:
            values = np.zeros(len(frames), np.float64)
            values[1:] = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2, 3))
            self._values.append(values)
        self._previous = hsv[-1]

    @property
    def values(self) -> np.ndarray:
        """Content value of every frame so far (see `content_values`)."""
        return np.concatenate(self._values) if self._values else np.zeros(0)

    def cuts(self, **thresholds) -> list[int]:
        """Frame indices where a new shot begins (`detect_cuts`'s thresholds as keyword arguments)."""
        return cuts_from_values(self.values, **thresholds)


def content_values(frames: np.ndarray) -> np.ndarray:
    """(N,) float: mean |HSV(frame i) - HSV(frame i-1)| over pixels and channels of the shrunk frames; 0 for frame 0."""
    detector = CutDetector()
    detector.add(frames)
    return detector.values


def detect_cuts(
    frames: np.ndarray, adaptive_threshold: float = ADAPTIVE_THRESHOLD, min_content: float = MIN_CONTENT,
    window: int = WINDOW, min_shot_frames: int = MIN_SHOT_FRAMES,
) -> list[int]:
    """Frame indices (sorted, > 0) where a new shot begins. `frames`: uint8 (N, h, w, 3), every frame, downscaled."""
    return cuts_from_values(content_values(frames), adaptive_threshold, min_content, window, min_shot_frames)


def cuts_from_values(
    values: np.ndarray, adaptive_threshold: float = ADAPTIVE_THRESHOLD, min_content: float = MIN_CONTENT,
    window: int = WINDOW, min_shot_frames: int = MIN_SHOT_FRAMES,
) -> list[int]:
    """The cut rule (module docstring) over every frame's content value."""
    cuts: list[int] = []
    last = 0
    for i in range(1, len(values)):
        # Neighbours of frame i's content value, excluding frame 0 (it has no predecessor).
        neighbours = np.r_[values[max(1, i - window):i], values[i + 1:i + 1 + window]]
        average = neighbours.mean() if len(neighbours) else 0.0
        ratio = values[i] / max(average, 1e-3)
        if values[i] >= min_content and ratio >= adaptive_threshold and i - last >= min_shot_frames:
            cuts.append(i)
            last = i
    return cuts


def split_into_clips(num_frames: int, cuts: list[int], fps: float, min_s: float = 1.0,
                     max_s: float = 8.0) -> list[tuple[int, int]]:
    """[start, end) frame ranges: no range spans a cut, each between min_s and max_s seconds long.

    A shot longer than max_s is split into the fewest equal pieces that fit; a shot shorter than
    min_s is dropped (merging it into a neighbour would span a cut).
    """
    if min_s > max_s:
        raise ValueError(f"min_s={min_s} is longer than max_s={max_s}")
    min_len = max(1, int(np.ceil(min_s * fps - 1e-9)))
    max_len = max(min_len, int(np.floor(max_s * fps + 1e-9)))
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < num_frames), num_frames]
    clips = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        length = end - start
        if length < min_len:
            continue
        pieces = -(-length // max_len)  # ceil
        if length // pieces < min_len:
            # Equal pieces would be too short (only when max_s < 2 * min_s): take as many
            # max-length pieces as fit and leave the remainder of the shot out.
            pieces = length // max_len
            edges = [start + i * max_len for i in range(pieces + 1)]
        else:
            edges = [start + round(i * length / pieces) for i in range(pieces + 1)]
        clips.extend(zip(edges[:-1], edges[1:]))
    return clips
