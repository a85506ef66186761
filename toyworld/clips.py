"""Clips of the toy world: a scene, one named object (plus maybe a distractor) and a camera move.

A `ClipSpec` is the whole truth of a clip; `draw_clip(seed)` picks one, `render_clip` draws its frames
with per-pixel depth, sprite ids and each object's visible box per frame, `caption` says it in words.

The camera is a window over the world: at the middle frame it sees world [0, size]², a pan or tilt
slides it CAMERA_SPEED·size px per frame, a zoom scales it by ZOOM_RATE per frame about its centre.
Labels name the *camera* (the names synthetic/corpus.py SHOT_KINDS and index/motion.py MOTION_LABELS
use): in a pan-left the window slides left, so the content moves right; tilt-up moves content down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storyreel.toyworld.scenes import SCENE_PHRASES, SCENES, background, background_depth
from storyreel.toyworld.sprites import (
    COLOURS,
    SHAPES,
    TEXTURE_WORDS,
    TEXTURES,
    Placement,
    layer,
    object_pixels,
    visible_box,
)

CAMERA_MOTIONS = ("static", "pan-left", "pan-right", "tilt-up", "tilt-down", "zoom-in", "zoom-out")
MOTION_PHRASES = {"static": "the camera stays still", "pan-left": "the camera pans left",
                  "pan-right": "the camera pans right", "tilt-up": "the camera tilts up",
                  "tilt-down": "the camera tilts down", "zoom-in": "the camera zooms in",
                  "zoom-out": "the camera zooms out"}
CAMERA_SPEED = 0.035  # pans and tilts: window travel per frame, as a fraction of the view
ZOOM_RATE = 1.03  # zooms: window size change per frame
_WINDOW_STEP = {"pan-left": (-1, 0), "pan-right": (1, 0), "tilt-up": (0, -1), "tilt-down": (0, 1)}


@dataclass(frozen=True)
class WorldObject:
    shape: str
    colour: str
    texture: str
    x: float  # world centre at the middle frame
    y: float
    vx: float  # its own motion, world px per frame
    vy: float
    radius: float
    depth: float  # constant over the clip; always nearer than the background it passes over


@dataclass(frozen=True)
class ClipSpec:
    scene: str
    scene_seed: int
    motion: str  # one of CAMERA_MOTIONS
    objects: tuple[WorldObject, ...]  # objects[0] is the one the caption names
    size: int = 64
    frames: int = 16


@dataclass
class RenderedClip:
    frames: np.ndarray  # uint8 (T, size, size, 3)
    depth: np.ndarray  # float32 (T, size, size), larger = farther
    ids: np.ndarray  # uint8 (T, size, size): 0 background, k = objects[k - 1]
    boxes: list[list[list[int] | None]]  # boxes[k][t]: objects[k]'s visible [x0, y0, x1, y1] in frame t


def draw_clip(seed, motion: str | None = None, size: int = 64, frames: int = 16) -> ClipSpec:
    """A random clip from `seed` (an int or a sequence of ints); `motion` fixes the camera move and
    changes nothing else, so a sidecar's seed and camera_motion redraw its clip."""
    rng = np.random.default_rng(seed)
    scene = SCENES[int(rng.integers(len(SCENES)))]
    drawn = CAMERA_MOTIONS[int(rng.integers(len(CAMERA_MOTIONS)))]  # drawn either way: same seed, same scene
    motion = motion or drawn
    main = _draw_object(rng, scene, size, frames, exclude_colour=None, offset=0.0)
    objects = (main,)
    if rng.random() < 0.5:  # a distractor of another colour, well to one side of the named object
        side = 1.0 if main.x < size / 2 else -1.0
        objects += (_draw_object(rng, scene, size, frames, exclude_colour=main.colour, offset=side * 0.45 * size),)
    return ClipSpec(scene, int(rng.integers(1 << 30)), motion, objects, size, frames)


def _draw_object(rng, scene: str, size: int, frames: int, exclude_colour, offset: float) -> WorldObject:
    colours = [c for c in COLOURS if c != exclude_colour]
    radius = float(size * rng.uniform(0.12, 0.18) * (0.7 if exclude_colour else 1.0))
    x = float(size / 2 + offset + rng.uniform(-0.12, 0.12) * size)
    y = float(size * rng.uniform(0.45, 0.65))
    vx, vy = (float(v) for v in rng.uniform(-0.012, 0.012, 2) * size)
    lowest = y + abs(vy) * frames / 2 + radius  # the nearest background it can cover
    depth = float(background_depth(scene, np.float32(lowest), size) * rng.uniform(0.5, 0.85))
    return WorldObject(SHAPES[int(rng.integers(len(SHAPES)))], colours[int(rng.integers(len(colours)))],
                       TEXTURES[int(rng.integers(len(TEXTURES)))], x, y, vx, vy, radius, depth)


def camera_path(motion: str, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Window centres (frames, 2) in world px and window scales (frames,) (world px per frame px)."""
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2
    centres = np.full((frames, 2), size / 2)
    scales = np.ones(frames)
    if motion in _WINDOW_STEP:
        centres += np.outer(t, _WINDOW_STEP[motion]) * CAMERA_SPEED * size
    elif motion in ("zoom-in", "zoom-out"):
        scales = ZOOM_RATE ** (-t if motion == "zoom-in" else t)
    elif motion != "static":
        raise ValueError(f"unknown camera motion {motion!r}; choose one of {', '.join(CAMERA_MOTIONS)}")
    return centres, scales


def render_clip(spec: ClipSpec) -> RenderedClip:
    """Frames, depth, sprite ids and visible boxes of every object in every frame."""
    size, count = spec.size, spec.frames
    centres, scales = camera_path(spec.motion, size, count)
    pixel = np.arange(size, dtype=np.float64) + 0.5 - size / 2  # pixel centres about the view centre
    frames = np.empty((count, size, size, 3), np.uint8)
    depth = np.empty((count, size, size), np.float32)
    ids = np.zeros((count, size, size), np.uint8)
    for t in range(count):
        xs = np.broadcast_to(centres[t, 0] + scales[t] * pixel, (size, size)).astype(np.float32)
        ys = np.broadcast_to((centres[t, 1] + scales[t] * pixel)[:, None], (size, size)).astype(np.float32)
        rgb = background(spec.scene, spec.scene_seed, xs, ys, size)
        depth[t] = background_depth(spec.scene, ys, size)
        moment = t - (count - 1) / 2
        for k, obj in enumerate(spec.objects, start=1):
            place = Placement(obj.x + obj.vx * moment, obj.y + obj.vy * moment, obj.radius)
            layer(rgb, depth[t], ids[t], object_pixels(obj.shape, obj.colour, obj.texture, *place.local(xs, ys)),
                  obj.depth, k)
        frames[t] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    boxes = [[visible_box(ids[t], k) for t in range(count)] for k in range(1, len(spec.objects) + 1)]
    return RenderedClip(frames, depth, ids, boxes)


def caption(spec: ClipSpec) -> str:
    """'a red striped circle on a beach, the camera pans left': the named object, scene and camera move."""
    obj = spec.objects[0]
    words = " ".join(w for w in (obj.colour, TEXTURE_WORDS[obj.texture], obj.shape) if w)
    return f"a {words} {SCENE_PHRASES[spec.scene]}, {MOTION_PHRASES[spec.motion]}"
