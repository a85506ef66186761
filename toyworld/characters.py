"""The held-out characters: two-colour figures with a face, kept out of every world clip and used only
to personalize (the training photos of `character train`).

Each character has its own body shape and colour, head colour, body pattern and face, so no two look
alike at 64 px; `character_images` draws one in varied poses (arm raise, lean, mirror), sizes and
places on varied backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.toyworld.scenes import SCENES, background
from storyreel.toyworld.sprites import Placement, layer


@dataclass(frozen=True)
class Character:
    body: tuple[int, int, int]
    head: tuple[int, int, int]
    tall: bool  # tall rounded body, else a round one
    pattern: str  # "belly", "bands" or "spots" on the body
    pattern_colour: tuple[int, int, int]
    face: str  # "smile" (two eyes, a mouth), "cyclops" (one big eye) or "visor" (a dark band, two lights)


CHARACTERS = {
    "pip": Character((245, 140, 30), (40, 170, 170), False, "belly", (250, 235, 200), "smile"),
    "bo": Character((130, 60, 170), (240, 150, 190), True, "bands", (250, 215, 60), "cyclops"),
    "zuzu": Character((235, 235, 235), (200, 40, 60), False, "spots", (20, 20, 20), "visor"),
}


def character_pixels(name: str, u: np.ndarray, v: np.ndarray, arm_raise: float = 0.0):
    """(mask, rgb float32 (..., 3)) of character `name` in local coordinates; `arm_raise` in radians."""
    look = CHARACTERS[name]
    if look.tall:
        body = (np.abs(u) <= 0.36) & (v >= -0.2) & (v <= 0.8)
    else:
        body = (u / 0.5) ** 2 + ((v - 0.3) / 0.52) ** 2 <= 1.0
    head = u**2 + (v + 0.5) ** 2 <= 0.36**2
    legs = (np.abs(np.abs(u) - 0.2) <= 0.07) & (v > 0.7) & (v <= 1.0)
    arms = np.zeros_like(body)
    for side in (-1.0, 1.0):
        reach = np.float32([side * np.cos(arm_raise), -np.sin(arm_raise)])
        along = np.clip((u - side * 0.4) * reach[0] + (v - 0.1) * reach[1], 0.0, 0.45)
        arms |= np.hypot(u - side * 0.4 - along * reach[0], v - 0.1 - along * reach[1]) <= 0.08
    rgb = np.empty(u.shape + (3,), np.float32)
    rgb[:] = np.float32(look.body)
    rgb[arms | legs] = np.float32(look.body) * 0.7
    rgb[body & _pattern(look.pattern, u, v)] = look.pattern_colour
    rgb[head] = look.head
    for part, colour in _face(look.face, u, v):
        rgb[head & part] = colour
    return body | head | legs | arms, rgb


def _pattern(pattern: str, u, v) -> np.ndarray:
    if pattern == "belly":
        return (u / 0.28) ** 2 + ((v - 0.38) / 0.3) ** 2 <= 1.0
    if pattern == "bands":
        return (v * 5.0) % 1.0 < 0.45
    cu, cv = (u / 0.3 + 0.5) % 1.0 - 0.5, (v / 0.3) % 1.0 - 0.5
    return cu * cu + cv * cv < 0.28**2


def _face(face: str, u, v):
    black, white = (15, 15, 15), (250, 250, 250)
    if face == "smile":
        eyes = (np.abs(u) - 0.13) ** 2 + (v + 0.58) ** 2 <= 0.075**2
        mouth = (np.abs(np.hypot(u, v + 0.55) - 0.2) <= 0.04) & (v > -0.45)
        return [(eyes, black), (mouth, white)]
    if face == "cyclops":
        eye = u**2 + (v + 0.52) ** 2
        return [(eye <= 0.17**2, white), (eye <= 0.08**2, black)]
    band = (np.abs(v + 0.53) <= 0.08) & (np.abs(u) <= 0.3)
    lights = (np.abs(u) - 0.13) ** 2 + (v + 0.53) ** 2 <= 0.05**2
    return [(band, black), (lights, white)]


def character_images(name: str, count: int, seed: int = 0, size: int = 64) -> np.ndarray:
    """`count` uint8 (size, size, 3) photos of character `name`: varied pose, size, place and background."""
    if name not in CHARACTERS:
        raise UserError(f"unknown character {name!r}; choose one of {', '.join(CHARACTERS)}")
    images = np.empty((count, size, size, 3), np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for i in range(count):
        rng = np.random.default_rng([seed, list(CHARACTERS).index(name), i])
        scene = SCENES[int(rng.integers(len(SCENES)))]
        shift = rng.uniform(-size, size, 2).astype(np.float32)  # a different stretch of the scene each time
        rgb = background(scene, int(rng.integers(1 << 30)), xs + shift[0], ys + shift[1], size)
        radius = size * rng.uniform(0.25, 0.45)
        centre = size / 2 + rng.uniform(-1, 1, 2) * (size / 2 - radius * 0.8)
        place = Placement(centre[0], centre[1], radius, angle=rng.uniform(-0.35, 0.35), mirrored=rng.random() < 0.5)
        depth, ids = np.full((size, size), np.inf, np.float32), np.zeros((size, size), np.uint8)
        layer(rgb, depth, ids, character_pixels(name, *place.local(xs, ys), arm_raise=rng.uniform(-0.8, 0.9)),
              1.0, 1)
        images[i] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return images


def write_character_photos(folder, name: str, count: int, seed: int = 0, size: int = 64) -> list[Path]:
    """Write `character_images(...)` as folder/<name>_000.png, ...: a photo folder for `character train`."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(character_images(name, count, seed, size)):
        paths.append(folder / f"{name}_{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths
