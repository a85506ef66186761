"""Temporal stabilization, the flicker metric and the conditioning tensor."""

from __future__ import annotations

import numpy as np
import pytest

from storyreel.depth import flicker, stabilize, to_conditioning


def synthetic_clip(frames=24, height=72, width=96, seed=0):
    """True inverse depth (static ramp + a near disc moving 1 px/frame) and a MiDaS-like raw
    prediction of it: per-frame scale/shift drift, noise, and 0.2% isolated spikes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    truth = np.empty((frames, height, width), np.float32)
    for t in range(frames):
        truth[t] = 0.2 + 0.8 * yy / (height - 1) + 0.1 * np.sin(xx / 9.0)
        truth[t][(xx - 20 - t) ** 2 + (yy - 30) ** 2 < 36] = 2.5
    steps = np.arange(frames)[:, None, None]
    scale, shift = 1 + 0.5 * np.sin(0.7 * steps), 0.5 * np.cos(0.3 * steps)
    raw = truth * scale + shift + rng.normal(0, 0.005, truth.shape)
    spikes = rng.random(raw.shape) < 0.002
    raw[spikes] += rng.uniform(-3, 6, spikes.sum())
    return truth, raw.astype(np.float32), spikes


def test_stabilized_depth_flickers_far_less_than_per_frame_minmax_and_matches_truth():
    truth, raw, spikes = synthetic_clip()
    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    per_frame = (raw - low) / (high - low)
    stable = stabilize(raw)
    assert stable.dtype == np.float32 and stable.shape == raw.shape
    assert stable.min() >= 0.0 and stable.max() <= 1.0
    assert flicker(per_frame) >= 5 * flicker(stable)
    # One global scale/shift maps the whole stabilized clip onto the truth. Spike pixels are
    # corrupted measurements (no truth to recover there), so they are left out of the fit.
    keep = ~spikes
    design = np.stack([stable[keep], np.ones(keep.sum())], axis=1)
    coef, *_ = np.linalg.lstsq(design, truth[keep], rcond=None)
    assert np.corrcoef(design @ coef, truth[keep])[0, 1] >= 0.99


def test_flicker_is_mean_absolute_frame_change():
    frames = np.zeros((3, 2, 2), np.float32)
    frames[1] = 0.5
    frames[2, 0, 0] = 1.0
    assert flicker(frames) == pytest.approx(((0.5 * 4) + (0.5 * 3 + 0.5)) / 8)
    assert flicker(frames[:1]) == 0.0


def test_constant_clip_normalizes_to_zeros():
    assert not stabilize(np.full((4, 8, 8), 3.0, np.float32)).any()


def test_conditioning_tensor_resamples_frames_and_keeps_aspect():
    import torch

    depth01 = np.zeros((10, 40, 80), np.float32)
    depth01[:, :, 40:] = 1.0                 # right half near
    depth01[7] = 0.25                        # a marker frame
    cond = to_conditioning(depth01, size=(32, 32), num_frames=4)
    assert isinstance(cond, torch.Tensor) and cond.dtype == torch.float32
    assert cond.shape == (4, 3, 32, 32)
    assert torch.equal(cond[:, 0], cond[:, 2])
    # frames 0, 3, 6, 9 (evenly spaced): the marker frame 7 is not among them
    assert not torch.isclose(cond, torch.tensor(0.25)).all(dim=(1, 2, 3)).any()
    # cover + center crop of a 2:1 frame to 1:1: left quarter of the crop is far, right near
    assert float(cond[0, 0, :, :12].max()) == 0.0 and float(cond[0, 0, :, 20:].min()) == pytest.approx(1.0)
    longer = to_conditioning(depth01[:3], size=(16, 24), num_frames=8)   # shorter clip: repeats
    assert longer.shape == (8, 3, 16, 24) and float(longer.min()) >= 0 and float(longer.max()) <= 1
