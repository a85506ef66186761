"""Temporal stabilization of per-frame MiDaS output, and the flicker metric.

MiDaS predicts inverse depth only up to an unknown scale and shift, and that pair drifts from
frame to frame; min-max normalizing each frame on its own (VideoCrafter's depth adapter) turns
the drift, and every change of the frame's nearest/farthest content, into flicker (MiDaS issues
#87, #174) which a depth-guided generator copies. Here, as in Video-Depth-Anything:

  1. align every frame to an anchor (the middle frame) by robust least squares on
     scale and shift, in inverse-depth space;
  2. the clip reference is the per-pixel median of those aligned frames (moving objects and
     noise drop out);
  3. align every raw frame again, now to that reference;
  4. one normalization for the whole clip: its 0.5th..99.5th percentile -> 0..1, clipped (a
     few isolated spikes, common in MiDaS output, must not squeeze the range of the rest).

"Robust" = iteratively reweighted least squares with Tukey biweights: pixels that disagree with
the reference (moving objects, disocclusions) get weight 0 and do not bend the fit. The fit
assumes most pixels show the same surface in frame and reference, i.e. a static or slowly
moving camera, which is what retrieval picks for structure guidance.
"""

from __future__ import annotations

import numpy as np

FIT_PIXELS = 20_000     # pixels sampled per frame for the fit (on a fixed grid)
IRLS_STEPS = 8
TUKEY_C = 4.685         # 95% efficiency under Gaussian noise
RANGE_PERCENTILES = (0.5, 99.5)


def flicker(depth_frames) -> float:
    """Mean absolute frame-to-frame change of normalized depth (F, H, W); 0.0 for < 2 frames."""
    frames = np.asarray(depth_frames, dtype=np.float32)
    if len(frames) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(frames, axis=0))))


def fit_scale_shift(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Robust (scale, shift) minimizing |scale * source + shift - target| over matching pixels."""
    x, y = source.ravel().astype(np.float64), target.ravel().astype(np.float64)
    spread_x = np.median(np.abs(x - np.median(x)))
    if spread_x < 1e-12:  # a constant frame carries no structure: map it to the target's median
        return 0.0, float(np.median(y))
    spread_y = np.median(np.abs(y - np.median(y)))
    scale = spread_y / spread_x
    shift = np.median(y) - scale * np.median(x)
    for _ in range(IRLS_STEPS):
        residual = scale * x + shift - y
        sigma = 1.4826 * np.median(np.abs(residual - np.median(residual)))
        if sigma < 1e-12:
            break
        u = residual / (TUKEY_C * sigma)
        w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        sw, swx, swy = w.sum(), (w * x).sum(), (w * y).sum()
        sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
        det = sw * sxx - swx * swx
        if sw < 3 or abs(det) < 1e-18:
            break
        scale = (sw * sxy - swx * swy) / det
        shift = (swy - scale * swx) / sw
    return float(scale), float(shift)


def _fit_grid(shape: tuple[int, int]) -> tuple[slice, slice]:
    step = max(1, int(np.sqrt(shape[0] * shape[1] / FIT_PIXELS)))
    return slice(None, None, step), slice(None, None, step)


def align_to(raw: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each frame of raw (F, H, W) mapped by its own robust scale/shift onto `reference` (H, W)."""
    grid = _fit_grid(reference.shape)
    aligned = np.empty(raw.shape, dtype=np.float32)
    for i, frame in enumerate(raw):
        scale, shift = fit_scale_shift(frame[grid], reference[grid])
        aligned[i] = scale * frame + shift
    return aligned


def stabilize(raw) -> np.ndarray:
    """Raw relative inverse depth (F, H, W) -> float32 (F, H, W) in [0, 1], one scale for the clip."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or len(raw) == 0:
        raise ValueError(f"expected depth frames (F, H, W), got shape {raw.shape}")
    anchor = raw[len(raw) // 2]
    reference = np.median(align_to(raw, anchor), axis=0)
    aligned = align_to(raw, reference)
    rows, cols = _fit_grid(reference.shape)
    low, high = np.percentile(aligned[:, rows, cols], RANGE_PERCENTILES)
    if high - low < 1e-12:
        return np.zeros_like(aligned)
    return np.clip((aligned - low) / (high - low), 0.0, 1.0).astype(np.float32)
