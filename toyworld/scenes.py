"""Backgrounds of the toy world: each scene kind has its own palette and texture, and a depth ramp.

World coordinates are pixels of a `size`×`size` view (the camera's middle frame sees x, y in
[0, size]); everything is a function of world position, so any camera window can be sampled.
Depth is in metres-like units, larger = farther: the sky (or the room's wall) is one far plane, the
ground below the horizon ramps from far at the horizon to near (1.0) at the bottom of the view.
"""

from __future__ import annotations

import numpy as np

from storyreel.toyworld.noise import fractal_noise, scattered_points, value_noise

SCENES = ("grass field", "beach", "night sky", "room")
SCENE_PHRASES = {"grass field": "in a grass field", "beach": "on a beach", "night sky": "under a night sky",
                 "room": "in a room"}
# horizon (fraction of the view's height), depth of the far plane above it, depth of the ground at it
_LAYOUT = {"grass field": (0.35, 30.0, 12.0), "beach": (0.3, 30.0, 12.0), "night sky": (0.7, 60.0, 8.0),
           "room": (0.5, 5.0, 5.0)}
NEAREST_GROUND = 1.0  # ground depth at the bottom of the view
_FLOOR = 0.5  # ground depth never goes below this (below the view's bottom edge, where a tilt may look)


def background_depth(scene: str, ys: np.ndarray, size: int) -> np.ndarray:
    """Depth of the background at world rows `ys` (float32, same shape)."""
    horizon_frac, far_plane, ground_far = _LAYOUT[scene]
    horizon = horizon_frac * size
    ramp = ground_far + (NEAREST_GROUND - ground_far) * (ys - horizon) / (size - horizon)
    return np.where(ys < horizon, far_plane, np.maximum(ramp, _FLOOR)).astype(np.float32)


def background(scene: str, seed: int, xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    """RGB float32 (..., 3) in [0, 255] of `scene` (textures seeded by `seed`) at world points (xs, ys)."""
    horizon = _LAYOUT[scene][0] * size
    above = ys < horizon
    sky, ground = _PAINTERS[scene]
    rgb = np.where(above[..., None], sky(seed, xs, ys, size), ground(seed, xs, ys, size))
    return np.clip(rgb, 0, 255).astype(np.float32)


def _mix(base, noise: np.ndarray, amount: float) -> np.ndarray:
    return np.asarray(base, np.float32) + amount * noise


def _day_sky(seed, xs, ys, size):
    clouds = np.clip(fractal_noise([seed, 1], xs, ys, size / 3, octaves=4), 0, 1)
    blue = _mix((140, 190, 235), fractal_noise([seed, 2], xs, ys, size / 5, channels=3), 8)
    return blue + clouds * (np.float32([250, 250, 250]) - blue) * 0.8


def _grass(seed, xs, ys, size):
    patches = fractal_noise([seed, 3], xs, ys, size / 4, channels=3)
    blades = value_noise([seed, 4], xs / 1.5, ys / 6, 1.0)  # thin vertical streaks
    return _mix((70, 135, 50), patches, 18) + blades * np.float32([20, 35, 12])


def _sand_and_sea(seed, xs, ys, size):
    sea_edge = 0.48 * size + 2 * value_noise([seed, 5], xs, ys, size / 6)[..., 0]
    waves = np.sin(ys * 1.4 + 3 * fractal_noise([seed, 6], xs, ys, size / 6)[..., 0])[..., None]
    sea = _mix((35, 95, 165), fractal_noise([seed, 7], xs, ys, size / 8, channels=3), 12) + waves * 18
    ripples = np.sin(0.9 * ys + 4 * value_noise([seed, 8], xs, ys, size / 5)[..., 0])[..., None]
    sand = (_mix((215, 190, 140), fractal_noise([seed, 9], xs, ys, 3.0, channels=3), 14)
            + ripples * np.float32([10, 9, 6]))
    return np.where((ys < sea_edge)[..., None], sea, sand)


def _night(seed, xs, ys, size):
    glow = np.clip(ys / size, 0, 1)[..., None] * np.float32([15, 15, 30])
    haze = fractal_noise([seed, 10], xs, ys, size / 4, octaves=4, channels=3)
    stars = scattered_points([seed, 11], xs, ys, cell=5.0, density=0.6, radius=1.6)[..., None]
    sky = _mix((15, 20, 50), haze, 14) + glow
    return sky + stars * (np.float32([255, 250, 215]) - sky)


def _night_ground(seed, xs, ys, size):
    return _mix((25, 35, 25), fractal_noise([seed, 12], xs, ys, 3.0, channels=3), 12)


def _wallpaper(seed, xs, ys, size):
    stripes = (np.sin(xs * (2 * np.pi / 8)) > 0)[..., None] * np.float32([18, 14, 10])
    flowers = scattered_points([seed, 13], xs, ys, cell=8.0, density=0.8, radius=2.0)[..., None]
    wall = _mix((195, 165, 130), fractal_noise([seed, 14], xs, ys, size / 4, channels=3), 10) + stripes
    return wall + flowers * (np.float32([150, 60, 90]) - wall)


def _floor(seed, xs, ys, size):
    plank = np.floor(ys / 5.0)
    grain = value_noise([seed, 15], xs / 8 + plank * 13.0, ys, 1.0)
    seams = ((ys % 5.0) < 0.8)[..., None] * -40.0
    return _mix((140, 92, 52), grain, 22) + seams + (plank % 2)[..., None] * 10


_PAINTERS = {"grass field": (_day_sky, _grass), "beach": (_day_sky, _sand_and_sea),
             "night sky": (_night, _night_ground), "room": (_wallpaper, _floor)}
