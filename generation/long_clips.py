"""Long clips: how a clip longer than one motion window is cut into windows and where each window's
initial noise comes from (`settings.long`, one of settings.LONG_MODES). generation/pipeline.py
denoises the windows this module plans.

* overlap (the default): neighbouring windows share M = `overlap_frames` frames; the new frames take
  the noise of the frames before the overlap, mirrored, with a weak past dependence (r = 0.5), and
  the overlap is anchored to the previous window's trajectory, longest at the seam.
* vidrd: Reuse and Diffuse as its official code does it: each clip's first M positions mirror the
  previous clip's last M (frame-level noise reversion), the rest take the mirrored previous noise
  with r = 4 (past-dependent sampling), and staged guidance (β = 0.4) holds overlap position f to
  the mirrored previous latents while step i < (M − f)·(T/M)·β.
* freenoise: the first window's noise shuffled into later blocks; the pipeline fuses the overlap
  windows' noise predictions at every step.

    plans = long_clip_plan(64, 16, 4, steps=25)                       # four windows
    noises = long_clip_noise((1, 4, 64, 8, 8), plans, "overlap", torch.Generator().manual_seed(0), torch.float32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Past dependence r of the new frames' noise: VidRD's r = 4 (each new frame shares 97% of its noise
# with its source), and the overlap mode's r = 0.5 (45%: scripts/bench_long.py), and the staged-guidance
# length β (window size and overlap M are settings).
VIDRD_DEPENDENCE = 4.0
OVERLAP_DEPENDENCE = 0.5
FREENOISE_SHUFFLE = 4  # FreeNoise's block of frames shuffled together (diffusers' context_stride default)
STAGED_GUIDANCE_BETA = 0.4


@dataclass(frozen=True)
class Window:
    start: int
    end: int
    overlap: int  # leading frames shared with the previous window (0 for the first)


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int) -> list[Window]:
    """Cover `num_frames` with windows of `window_frames` that overlap by `overlap_frames`.

    The last window is moved back to end on the last frame, so it may overlap more.
    """
    if num_frames <= window_frames:
        return [Window(0, num_frames, 0)]
    stride = window_frames - overlap_frames
    starts = list(range(0, num_frames - window_frames, stride)) + [num_frames - window_frames]
    return [Window(s, s + window_frames, 0 if k == 0 else starts[k - 1] + window_frames - s)
            for k, s in enumerate(starts)]


@dataclass(frozen=True)
class WindowPlan:
    """How one window of a long clip is denoised and what it contributes.

    frame_ids: the output frame each position stands for (its depth map; its noise comes from the mode).
    keep: (position, output frame) pairs this window writes into the clip.
    anchors: (position, previous window's position, n): the position takes the previous window's
    latents at that position before every step i < n (staged guidance).
    record: what the clip's `windows` list reports for it ({"start", "frames", "overlap"}).
    """

    frame_ids: tuple[int, ...]
    keep: tuple[tuple[int, int], ...]
    anchors: tuple[tuple[int, int, float], ...]
    record: dict


def long_clip_plan(num_frames: int, window_frames: int, overlap_frames: int, steps: int,
                   mode: str = "overlap") -> list[WindowPlan]:
    """The windows of a `num_frames` clip in long-clip `mode` (settings.LONG_MODES), for `steps` steps.

    overlap (and freenoise, which fuses the same windows): `plan_windows`; the overlap positions are
    anchored to the previous window's same frames,
    the seam frame (right before the first new frame) longest: overlap position f of M is held while
    i < (f + 1)·(T/M)·β, so the seam frame for β·T steps and the farthest for β·T/M.
    vidrd (the official Reuse and Diffuse code): every clip has N = window_frames positions; clip k+1's
    positions f < M mirror clip k's positions N−1−f (their depth and, while i < (M − f)·(T/M)·β,
    their latents), its positions p ≥ M follow the next N − M depth frames in order. The output is the
    official concatenation: every position of every clip, clip after clip (the mirrored positions
    included), cut at `num_frames`; depth frames past the end repeat the last one.
    """
    if num_frames <= window_frames:
        return [WindowPlan(tuple(range(num_frames)), tuple((p, p) for p in range(num_frames)), (),
                           {"start": 0, "frames": num_frames, "overlap": 0})]
    beta = STAGED_GUIDANCE_BETA
    if mode == "vidrd":
        n, m = window_frames, overlap_frames
        plans = [WindowPlan(tuple(range(n)), tuple((p, p) for p in range(n)), (),
                            {"start": 0, "frames": n, "overlap": 0})]
        written, consumed = n, n  # output frames so far; depth frames followed so far
        while written < num_frames:
            previous = plans[-1].frame_ids
            frame_ids = tuple(previous[n - 1 - f] for f in range(m)) + tuple(
                min(consumed + p - m, num_frames - 1) for p in range(m, n))
            keep = tuple((p, written + p) for p in range(n) if written + p < num_frames)
            anchors = tuple((f, n - 1 - f, (m - f) * (steps / m) * beta) for f in range(m))
            plans.append(WindowPlan(frame_ids, keep, anchors, {"start": written, "frames": n, "overlap": m}))
            written, consumed = written + len(keep), consumed + n - m
        return plans
    if mode not in ("overlap", "freenoise"):
        raise ValueError(f"unknown long-clip mode {mode!r}")
    windows = plan_windows(num_frames, window_frames, overlap_frames)
    plans = []
    for previous, window in zip([None, *windows], windows):
        frames, overlap = window.end - window.start, window.overlap
        anchors = () if previous is None else tuple(
            (f, window.start - previous.start + f, (f + 1) * (steps / overlap) * beta) for f in range(overlap))
        plans.append(WindowPlan(tuple(range(window.start, window.end)),
                                tuple((p, window.start + p) for p in range(overlap, frames)), anchors,
                                {"start": window.start, "frames": frames, "overlap": overlap}))
    return plans


def long_clip_noise(shape, plans: list[WindowPlan], mode: str, generator, dtype) -> list[torch.Tensor]:
    """Initial noise of every window, (1, C, positions, h, w) each, drawn on the CPU in window order.

    The first window's noise is exactly what diffusers draws for its shape and generator.
    overlap: one noise per output frame; a window's overlap positions are the frames already drawn, its
    new frames j = 0, 1, ... take the noise of frame start − 1 − j (the frames before the overlap,
    mirrored about it, as VidRD indexes its mirrored clip) blended with fresh noise as
    (r·source + ε)/√(1 + r²), r = OVERLAP_DEPENDENCE (the division keeps unit variance).
    freenoise: after the first window, each block of FREENOISE_SHUFFLE frames is the block one window
    earlier in a random order.
    vidrd: with prev the previous window's noise flipped in time, positions f < M are prev[f]
    (frame-level noise reversion) and positions p ≥ M are (r·prev[p] + ε)/√(1 + r²), r = 4
    (past-dependent sampling); ε is drawn for all N positions and used from M on, as the official code
    draws it.
    """
    from diffusers.utils.torch_utils import randn_tensor

    def fresh(count):
        return randn_tensor((*shape[:2], count, *shape[3:]), generator=generator, dtype=dtype)

    first = fresh(len(plans[0].frame_ids))
    noises = [first]
    if mode == "vidrd":
        r = VIDRD_DEPENDENCE
        for plan in plans[1:]:
            m = len(plan.anchors)
            prev = noises[-1].flip(2)
            window = prev.clone()
            window[:, :, m:] = (r * prev[:, :, m:] + fresh(prev.shape[2])[:, :, m:]) / math.sqrt(1 + r * r)
            noises.append(window)
        return noises
    noise = torch.empty(shape, dtype=dtype)
    noise[:, :, :first.shape[2]] = first
    if mode == "freenoise":
        # Noise rescheduling: after the first window, each block of `FREENOISE_SHUFFLE` frames repeats the
        # block one window earlier in a random order (local shuffles of the first window's noise).
        window_frames = first.shape[2]
        for start in range(window_frames, shape[2], FREENOISE_SHUFFLE):
            count = min(FREENOISE_SHUFFLE, shape[2] - start)
            source = start - window_frames + torch.randperm(FREENOISE_SHUFFLE, generator=generator)[:count]
            noise[:, :, start:start + count] = noise[:, :, source]
        return [first] + [noise[:, :, p.frame_ids[0]:p.frame_ids[-1] + 1].clone() for p in plans[1:]]
    r = OVERLAP_DEPENDENCE
    for plan in plans[1:]:
        start, frames = plan.frame_ids[0], len(plan.frame_ids)
        new = [output for _, output in plan.keep]
        source = [max(start - 1 - j, 0) for j in range(len(new))]
        noise[:, :, new] = (r * noise[:, :, source] + fresh(len(new))) / math.sqrt(1 + r * r)
        noises.append(noise[:, :, start:start + frames])
    return [first] + [n.clone() for n in noises[1:]]


def clip_noise(plans: list[WindowPlan], noises: list[torch.Tensor]) -> torch.Tensor:
    """(1, C, F, h, w): the initial noise each output frame is denoised from (the window that keeps it)."""
    frames = 1 + max(output for plan in plans for _, output in plan.keep)
    out = torch.empty((*noises[0].shape[:2], frames, *noises[0].shape[3:]), dtype=noises[0].dtype)
    for plan, noise in zip(plans, noises):
        positions, outputs = zip(*plan.keep)
        out[:, :, list(outputs)] = noise[:, :, list(positions)]
    return out
