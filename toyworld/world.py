"""Write a toy world to disk: mp4 clips with their ground truth, split into train and held-out by seed.

    folder/clip_0000.mp4          the clip (H.264, what the indexer and the trainers read)
    folder/clip_0000.mp4.json     its truth: caption, scene, objects, camera motion, boxes per frame
    folder/clip_0000.depth.npz    depth float16 (T, H, W) and sprite ids uint8 (T, H, W), compressed
    folder/world.json             the settings, the vocabulary and the split

`draw_clip(truth["seed"], truth["camera_motion"], truth["size"], truth["frames"])` redraws a clip.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write, sidecar_path, write_text_atomic
from storyreel.core.video import write_mp4
from storyreel.toyworld.characters import CHARACTERS
from storyreel.toyworld.clips import CAMERA_MOTIONS, ClipSpec, caption, draw_clip, render_clip
from storyreel.toyworld.scenes import SCENES
from storyreel.toyworld.sprites import COLOURS, SHAPES, TEXTURES


def held_out_clips(clips: int, seed: int, fraction: float = 0.2) -> set[int]:
    """Which clip numbers the seed holds out (round(clips·fraction) of them, at least one from 2 clips on)."""
    count = max(int(round(clips * fraction)), 1 if clips >= 2 and fraction > 0 else 0)
    order = np.random.default_rng([seed, 7]).permutation(clips)
    return set(order[:count].tolist())


def clip_truth(spec: ClipSpec, boxes: list, fps: float, split: str, seed: list[int]) -> dict:
    """The JSON sidecar of one clip: everything needed to check a model against it or redraw it."""
    named = spec.objects[0]
    return {"caption": caption(spec), "split": split, "seed": seed, "scene": spec.scene,
            "scene_seed": spec.scene_seed, "camera_motion": spec.motion, "shape": named.shape,
            "colour": named.colour, "texture": named.texture, "fps": fps, "frames": spec.frames,
            "size": spec.size, "objects": [{**asdict(obj), "id": k, "boxes": boxes[k - 1]}
                                           for k, obj in enumerate(spec.objects, start=1)]}


def write_world(folder, clips: int = 100, seed: int = 0, size: int = 64, frames: int = 16, fps: float = 8,
                held_out: float = 0.2) -> list[dict]:
    """Write `clips` clips into `folder` (see the module doc); returns their truths in clip order.

    Camera moves take turns (every move equally often), everything else is drawn from [seed, clip number].
    """
    if clips < 1 or size < 16 or size % 2 or frames < 2 or fps <= 0 or not 0 <= held_out < 1:
        raise UserError(f"write_world: need clips >= 1 (got {clips}), an even size >= 16 (got {size}), "
                        f"frames >= 2 (got {frames}), fps > 0 (got {fps}) and 0 <= held_out < 1 (got {held_out})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = held_out_clips(clips, seed, held_out)
    truths = []
    for i in range(clips):
        clip_seed = [seed, i]
        spec = draw_clip(clip_seed, motion=CAMERA_MOTIONS[(i + seed) % len(CAMERA_MOTIONS)], size=size, frames=frames)
        rendered = render_clip(spec)
        video = folder / f"clip_{i:04d}.mp4"
        atomic_write(video, lambda tmp, r=rendered: write_mp4(tmp, iter(r.frames), fps=fps, crf=18))
        atomic_write(folder / f"clip_{i:04d}.depth.npz",
                     lambda tmp, r=rendered: _save_npz(tmp, depth=r.depth.astype(np.float16), ids=r.ids))
        truth = clip_truth(spec, rendered.boxes, fps, "heldout" if i in held else "train", clip_seed)
        write_text_atomic(sidecar_path(video), json.dumps(truth, indent=1) + "\n")
        truths.append(truth)
    manifest = {"seed": seed, "clips": clips, "size": size, "frames": frames, "fps": fps, "held_out": held_out,
                "scenes": list(SCENES), "shapes": list(SHAPES), "colours": list(COLOURS), "textures": list(TEXTURES),
                "camera_motions": list(CAMERA_MOTIONS), "characters": list(CHARACTERS),
                "train": [f"clip_{i:04d}.mp4" for i in range(clips) if i not in held],
                "heldout": [f"clip_{i:04d}.mp4" for i in sorted(held)]}
    write_text_atomic(folder / "world.json", json.dumps(manifest, indent=1) + "\n")
    return truths


def _save_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would add its own ".npz" to a path
        np.savez_compressed(fh, **arrays)
