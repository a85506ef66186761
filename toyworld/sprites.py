"""Sprites of the toy world: objects (shape × colour × texture) and the held-out characters.

A sprite is drawn in its own local coordinates (u, v) in [-1, 1]² (v points down); a `Placement`
maps world points to local ones (centre, radius in world px, rotation, mirror). Drawing returns a
coverage mask and the colours, and `layer` puts a sprite into a frame by depth: a pixel takes the
sprite where the sprite is nearer than what is there already, so nearer sprites occlude farther ones
whatever order they are drawn in.

Object pixels use exactly two colours: the named colour and its dark shade (`shade`), so a frame's
"where is the red thing" mask is exact on frames that were not compressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (50, 190, 70), "blue": (40, 90, 220), "yellow": (235, 205, 40)}
TEXTURES = ("solid", "striped", "dotted")
TEXTURE_WORDS = {"solid": "", "striped": "striped", "dotted": "dotted"}  # "a red circle" for solid


def shade(colour: str) -> tuple[int, int, int]:
    """The dark shade of a named colour: the stripes and dots of a textured object."""
    return tuple(c // 2 for c in COLOURS[colour])


@dataclass(frozen=True)
class Placement:
    x: float  # world centre
    y: float
    radius: float  # world px from the centre to the edge of the local square
    angle: float = 0.0  # radians, clockwise on screen
    mirrored: bool = False

    def local(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = (xs - self.x) / self.radius, (ys - self.y) / self.radius
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        return (-u if self.mirrored else u), v


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
    if shape == "triangle":  # apex up, base down
        return (v <= 0.9) & (np.abs(u) <= (v + 1.0) * 0.5)
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def object_pixels(shape: str, colour: str, texture: str, u: np.ndarray, v: np.ndarray):
    """(mask, rgb float32 (..., 3)) of one object in local coordinates."""
    mask = shape_mask(shape, u, v)
    if texture == "solid":
        marked = np.zeros_like(mask)
    elif texture == "striped":  # diagonal bands, about 7 across the object
        marked = ((u + v) / 0.6) % 1.0 < 0.5
    elif texture == "dotted":  # a grid of round dots
        cu, cv = (u / 0.6 + 0.5) % 1.0 - 0.5, (v / 0.6 + 0.5) % 1.0 - 0.5
        marked = cu * cu + cv * cv < 0.3**2
    else:
        raise ValueError(f"unknown texture {texture!r}; choose one of {', '.join(TEXTURES)}")
    rgb = np.where(marked[..., None], np.float32(shade(colour)), np.float32(COLOURS[colour]))
    return mask, rgb


def layer(rgb: np.ndarray, depth: np.ndarray, ids: np.ndarray, sprite, sprite_depth: float, sprite_id: int) -> None:
    """Draw `sprite` = (mask, colours) at `sprite_depth` into the frame arrays, in place, where it is nearer."""
    mask, colours = sprite
    wins = mask & (sprite_depth < depth)
    rgb[wins] = colours[wins]
    depth[wins] = sprite_depth
    ids[wins] = sprite_id


def visible_box(ids: np.ndarray, sprite_id: int) -> list[int] | None:
    """[x0, y0, x1, y1] (pixels, x1/y1 exclusive) around the pixels showing `sprite_id`; None if hidden."""
    rows, cols = np.nonzero(ids == sprite_id)
    if rows.size == 0:
        return None
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
