"""Paintings: random shapes in any colour, the open-world images the toy image autoencoder also learns from.

A real latent diffusion model's autoencoder was trained on millions of ordinary photos, so it encodes any
colour and shape, not only those of the videos a motion model later meets. The toy world has four object
colours and four scene palettes; an autoencoder trained on it alone cannot draw a new character's colours,
and then no personalization can show. Paintings fill that gap with generic content (ellipses, boxes,
strokes, bands and noise in uniformly random colours), never a character: those stay held out.

    images = paintings(16, seed=0)   # uint8 (16, 64, 64, 3)
"""

from __future__ import annotations

import numpy as np

from storyreel.toyworld.noise import fractal_noise

SHAPES_PER_PAINTING = (2, 9)  # fewest, most shapes on one painting (upper bound exclusive)
KIND_ODDS = (0.35, 0.3, 0.25, 0.1)  # ellipse, box, stroke, bands


def paintings(count: int, seed: int = 0, size: int = 64) -> np.ndarray:
    """`count` uint8 (size, size, 3) paintings: a two-colour noise or gradient ground under random shapes."""
    images = np.empty((count, size, size, 3), np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        rgb = _ground(rng, xs, ys, size)
        for _ in range(int(rng.integers(*SHAPES_PER_PAINTING))):
            mask = _shape(rng, xs, ys, size)
            rgb[mask] = rng.uniform(0, 255, 3)
        images[i] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return images


def _ground(rng, xs, ys, size) -> np.ndarray:
    """A blend of two random colours by a smooth noise field or a linear gradient."""
    low, high = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    if rng.random() < 0.5:
        weight = np.clip(0.5 + 0.5 * fractal_noise(int(rng.integers(1 << 30)), xs, ys, size * rng.uniform(0.1, 0.6)),
                         0, 1)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        weight = ((np.cos(angle) * xs + np.sin(angle) * ys) / size % 1.0)[..., None]
    return low + (high - low) * weight


def _shape(rng, xs, ys, size) -> np.ndarray:
    """Mask of one ellipse, box, stroke or band at a random place, size and angle."""
    cx, cy = rng.uniform(0, size, 2)
    rx, ry = rng.uniform(0.04, 0.35, 2) * size
    angle = rng.uniform(0, np.pi)
    u = (np.cos(angle) * (xs - cx) + np.sin(angle) * (ys - cy)) / rx
    v = (-np.sin(angle) * (xs - cx) + np.cos(angle) * (ys - cy)) / ry
    kind = rng.choice(4, p=KIND_ODDS)
    if kind == 0:
        return u * u + v * v <= 1.0
    if kind == 1:
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == 2:  # a thin stroke along u
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.15)
    return (u / 2.0) % 1.0 < 0.4  # bands across the whole painting, at least 2 px wide
