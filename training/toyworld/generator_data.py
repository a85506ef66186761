"""The toy world as the generator stage reads it: frames, depth hints, captions, and the colour masks
its measurements compare.

A clip's depth hint is what the pipeline is fed (generation/pipeline.py `__call__`: (F, 3, H, W) in
[0, 1], near = bright): the world's true depth turned into inverse depth and scaled to [0, 1] with one
range for the whole clip, as depth/temporal.py `stabilize` scales a depth model's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.toyworld import COLOURS, draw_clip, render_clip

# A generated pixel "is" a colour when it lies this close (RGB distance) to the colour's pure value:
# far enough to take a blurry reconstruction, near enough to leave out grass, sea and sand.
COLOUR_RADIUS = 45.0


@dataclass
class WorldClip:
    caption: str
    colour: str  # the named object's colour
    frames: np.ndarray  # uint8 (T, H, W, 3)
    hint: np.ndarray  # float32 (T, H, W) in [0, 1], near = bright
    named: np.ndarray  # bool (T, H, W): where the named object shows


def read_world(world_dir: Path, split: str) -> list[WorldClip]:
    """Every clip of `split` ("train" or "heldout") of a world written by storyreel.toyworld.write_world.

    Frames are redrawn from the truth's seed (exact pixels, no video compression), depth and object
    ids come from the clip's .depth.npz.
    """
    world_dir = Path(world_dir)
    manifest_path = world_dir / "world.json"
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path} is missing; write the world first (storyreel.toyworld.write_world)")
    manifest = json.loads(manifest_path.read_text())
    clips = []
    for name in manifest[split]:
        truth = json.loads((world_dir / f"{name}.json").read_text())
        spec = draw_clip(truth["seed"], truth["camera_motion"], truth["size"], truth["frames"])
        with np.load(world_dir / name.replace(".mp4", ".depth.npz")) as stored:
            depth, ids = stored["depth"].astype(np.float32), stored["ids"]
        frames = render_clip(spec).frames
        clips.append(WorldClip(truth["caption"], truth["colour"], frames, depth_hint(depth), ids == 1))
    return clips


def depth_hint(depth: np.ndarray) -> np.ndarray:
    """True depth (T, H, W), larger = farther -> the pipeline's hint: inverse depth in [0, 1] per clip."""
    inverse = 1.0 / np.maximum(depth, 1e-3)
    low, high = inverse.min(), inverse.max()
    return ((inverse - low) / max(high - low, 1e-6)).astype(np.float32)


def colour_masks(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per named colour, bool (..., H, W): the pixels of `frames` (uint8 or float in [0, 255]) near it."""
    pixels = np.asarray(frames, dtype=np.float32)
    return {name: np.linalg.norm(pixels - np.float32(rgb), axis=-1) < COLOUR_RADIUS for name, rgb in COLOURS.items()}


def dominant_colour(frames: np.ndarray) -> str:
    """The named colour covering the most pixels of the frames."""
    counts = {name: int(mask.sum()) for name, mask in colour_masks(frames).items()}
    return max(counts, key=counts.get)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
