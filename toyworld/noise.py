"""Smooth procedural noise evaluated at any float world coordinates (numpy only).

Backgrounds are functions of world position, not pre-rendered images, so a camera can pan or
zoom anywhere without running off a canvas and every frame is sampled exactly (no resampling).
"""

from __future__ import annotations

import numpy as np

LATTICE = 64  # lattice cells before the noise repeats; at the smallest cell used (2 px) that is 128 px


def value_noise(seed, xs: np.ndarray, ys: np.ndarray, cell: float, channels: int = 1) -> np.ndarray:
    """Noise in [-1, 1], shape xs.shape + (channels,), with features about `cell` world px apart."""
    lattice = np.random.default_rng(seed).uniform(-1, 1, (LATTICE, LATTICE, channels)).astype(np.float32)
    gx, gy = xs / cell, ys / cell
    x0, y0 = np.floor(gx), np.floor(gy)
    fx, fy = _smoothstep(gx - x0)[..., None], _smoothstep(gy - y0)[..., None]
    i0, j0 = x0.astype(np.int64) % LATTICE, y0.astype(np.int64) % LATTICE
    i1, j1 = (i0 + 1) % LATTICE, (j0 + 1) % LATTICE
    top = lattice[j0, i0] * (1 - fx) + lattice[j0, i1] * fx
    bottom = lattice[j1, i0] * (1 - fx) + lattice[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


def fractal_noise(seed, xs: np.ndarray, ys: np.ndarray, cell: float, octaves: int = 3,
                  channels: int = 1) -> np.ndarray:
    """Value noise summed over `octaves` (each half the cell, 0.6 the amplitude), about unit spread."""
    total = np.zeros(xs.shape + (channels,), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * value_noise([*np.atleast_1d(seed), octave], xs, ys, cell / 2**octave, channels)
        norm += amplitude
        amplitude *= 0.6
    return total * (1.6 / norm)


def scattered_points(seed, xs: np.ndarray, ys: np.ndarray, cell: float, density: float,
                     radius: float) -> np.ndarray:
    """Brightness in [0, 1] of round points (stars): at most one per `cell`, present with chance `density`."""
    table = np.random.default_rng(seed).uniform(0, 1, (LATTICE, LATTICE, 3)).astype(np.float32)
    ci, cj = np.floor(xs / cell), np.floor(ys / cell)
    present, jx, jy = np.moveaxis(table[cj.astype(np.int64) % LATTICE, ci.astype(np.int64) % LATTICE], -1, 0)
    px = (ci + 0.2 + 0.6 * jx) * cell
    py = (cj + 0.2 + 0.6 * jy) * cell
    distance = np.hypot(xs - px, ys - py)
    return np.where(present < density, np.clip(1.0 - distance / radius, 0.0, 1.0), 0.0).astype(np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)
