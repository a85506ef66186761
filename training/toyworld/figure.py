"""The toy world's picture: held-out clips, their depth, and what the trained generator makes of them.

    figure(weights_dir, world_dir, "docs/toyworld.png")

One row per held-out clip of a different scene. Panels, each the first and last of SAMPLE_FRAMES frames:
the source clip, its depth hint, the caption sampled at each τ of TAUS_SHOWN, and Pip's pack ("<pip>" and
the clip's scene phrase) at τ 0 and 1. Every tile carries the named object's true box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.training.toyworld.generator import SAMPLE_FRAMES, load_pipeline, sample
from storyreel.training.toyworld.generator_data import read_world

TAUS_SHOWN = (0.0, 0.5, 1.0)
PACK_TAUS = (0.0, 1.0)
SHOWN_FRAMES = (0, SAMPLE_FRAMES - 1)


def figure(weights_dir: Path, world_dir: Path, out_png: Path, clips: int = 3) -> Path:
    """Paint the picture (module doc) into `out_png`; returns its path."""
    from storyreel.core.sheet import SheetRow, paint_sheet
    from storyreel.training.toyworld.tau import PACK, character_samples

    weights_dir, world_dir = Path(weights_dir), Path(world_dir)
    held, boxes = _one_clip_per_scene(world_dir, clips)
    pipe = load_pipeline(weights_dir)
    panels = [[c.frames[:SAMPLE_FRAMES] for c in held],
              [np.repeat((c.hint[:SAMPLE_FRAMES, ..., None] * 255).astype(np.uint8), 3, -1) for c in held]]
    panels += [[sample(pipe, c.caption, c.hint[:SAMPLE_FRAMES], tau, seed=k) for k, c in enumerate(held)]
               for tau in TAUS_SHOWN]
    titles = ["source", "depth", *(f"caption, tau {tau:g}" for tau in TAUS_SHOWN)]
    if (weights_dir / PACK).is_file():
        panels += character_samples(weights_dir, weights_dir / PACK, held, [(tau, True) for tau in PACK_TAUS])
        titles += [f"<pip>, tau {tau:g}" for tau in PACK_TAUS]
    rows = [SheetRow(caption=["   |   ".join(titles)], panels=[])]
    for k, clip in enumerate(held):
        tiles = [[frames[k][t] for t in SHOWN_FRAMES] for frames in panels]
        row_boxes = [[[(boxes[k][t], "")] if boxes[k][t] else [] for t in SHOWN_FRAMES] for _ in tiles]
        rows.append(SheetRow(panels=tiles, caption=[clip.caption], boxes=row_boxes))
    return paint_sheet(out_png, rows, tile_height=96, gap=4)


def _one_clip_per_scene(world_dir: Path, count: int):
    """The first held-out clip of each scene (up to `count`) and the named object's boxes per frame as
    fractions of the frame (None while hidden)."""
    from storyreel.training.toyworld.layouts import held_out_truths

    held, boxes, scenes = [], [], set()
    for truth, clip in zip(held_out_truths(world_dir), read_world(world_dir, "heldout")):
        if truth["scene"] in scenes or len(held) == count:
            continue
        scenes.add(truth["scene"])
        held.append(clip)
        size = truth["size"]
        boxes.append([tuple(v / size for v in box) if box else None for box in truth["objects"][0]["boxes"]])
    return held, boxes
