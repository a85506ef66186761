"""`storyreel demo`: the whole chain on synthetic data with the `tiny` preset, offline, in about a minute.

1. a synthetic corpus (textured scenes with pans, tilts, zooms, static shots and hard cuts)
2. an index of it
3. two character packs trained for a few steps on generated images
4. a 3-plot story file
5. the rendered story (plots, story.mp4, storyboard.png, manifest.json)

Tiny models are random: the frames are noise-like. The demo proves the plumbing, not the quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.core.files import write_text_atomic
from storyreel.core.progress import Progress

# Two characters drawn in code: (name, token, class word, body colour, shape).
CHARACTERS = (("Teddy", "<teddy>", "bear", (150, 90, 40), "round"), ("Robo", "<robo>", "robot", (90, 110, 200), "boxy"))

STORY = """\
title: The demo
characters:
  "<teddy>": {pack: packs/teddy.safetensors, name: Teddy, word: bear}
  "<robo>": {pack: packs/robo.safetensors, name: Robo, word: robot}
style: storybook illustration
defaults: {frames: 8, fps: 8, height: 64, width: 64, steps: 4, cfg: 7.5, tau: 0.5, seed: 0}
plots:
  - text: Teddy walks through the forest.
    motion: pan-left
  - text: Robo looks up at the sky.
    motion: tilt-up
  - text: Teddy and Robo meet in a clearing.
    motion: zoom-in
"""


def run_demo(out_dir, progress: Progress | None = None) -> dict:
    """Run every step into `out_dir`; returns {"index", "story", "render": paths, "manifest": the render's
    Manifest (story/manifest.py)}.

    progress: a `Progress` told each step; None reports nothing.
    """
    from storyreel import index
    from storyreel.story.render import RenderOptions, render_story
    from storyreel.synthetic import make_corpus
    from storyreel.training.train import TrainSettings, train_character

    out = Path(out_dir)
    progress = progress or Progress("demo", quiet=True)

    progress.update(force=True, step="1/5 synthetic corpus")
    make_corpus(out / "videos", num_videos=3, shots_per_video=3, shot_seconds=1.5, size=(128, 72), fps=12)

    progress.update(force=True, step="2/5 index")
    index.build(out / "videos", out / "index", index.BuildSettings(preset="tiny"))

    progress.update(force=True, step="3/5 character packs")
    (out / "packs").mkdir(parents=True, exist_ok=True)
    for name, token, word, colour, shape in CHARACTERS:
        images = out / "characters" / name.lower()
        write_character_images(images, colour, shape)
        pack = out / "packs" / f"{name.lower()}.safetensors"
        if not pack.is_file():  # a rerun keeps the packs, so the story's plots stay unchanged
            train_character(images, pack, TrainSettings(token=token, init_word=word, steps=6, size=32, frames=2,
                                                        checkpoint_every=100), preset="tiny")

    progress.update(force=True, step="4/5 story file")
    story = out / "story.yaml"
    write_text_atomic(story, STORY)

    progress.update(force=True, step="5/5 render")
    manifest = render_story(story, out / "index", out / "render", RenderOptions(preset="tiny"))
    return {"index": str(out / "index"), "story": str(story), "render": str(out / "render"), "manifest": manifest}


def write_character_images(folder: Path, colour: tuple[int, int, int], shape: str, count: int = 4) -> None:
    """A few views of a simple drawn character (body, head, eyes) on different backgrounds."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour))
    for n in range(count):
        background = tuple(int(v) for v in rng.integers(170, 255, 3))
        image = Image.new("RGB", (96, 96), background)
        draw = ImageDraw.Draw(image)
        dx, dy = (int(v) for v in rng.integers(-8, 9, 2))
        body = (28 + dx, 44 + dy, 68 + dx, 88 + dy)
        head = (32 + dx, 14 + dy, 64 + dx, 46 + dy)
        if shape == "round":
            draw.ellipse(body, fill=colour)
            draw.ellipse(head, fill=colour)
            draw.ellipse((30 + dx, 10 + dy, 40 + dx, 20 + dy), fill=colour)  # ears
            draw.ellipse((56 + dx, 10 + dy, 66 + dx, 20 + dy), fill=colour)
        else:
            draw.rectangle(body, fill=colour)
            draw.rectangle(head, fill=colour)
            draw.line((48 + dx, 14 + dy, 48 + dx, 4 + dy), fill=colour, width=2)  # antenna
        draw.ellipse((39 + dx, 24 + dy, 44 + dx, 29 + dy), fill="black")
        draw.ellipse((52 + dx, 24 + dy, 57 + dx, 29 + dy), fill="black")
        image.save(folder / f"{n}.png")
