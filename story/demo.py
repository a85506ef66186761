"""`storyreel demo`: the whole chain offline, on the `toy` preset by default (`--models tiny`: random
models, for tests and smoke runs).

toy (about a minute on 2 CPU cores; docs/toyworld.md):
1. a folder of toy-world videos (storyreel.toyworld: shapes in four scenes, each clip with its truth)
2. an index of it, embedded by the toy CLIP
3. the character pack of Pip, trained on the toy generator (core/presets/toy/characters/), or trained
   here when a preset has none
4. a 3-plot story: Pip takes the place of an object the story names in a clip of the folder
5. the rendered story (plots, story.mp4, storyboard.png, manifest.json): each plot's storyboard row
   shows the retrieved clip, its depth and the generated frames

tiny: a synthetic corpus, two packs trained for a few steps, a 3-plot story; the frames are noise-like.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic
from storyreel.core.progress import Progress

DEMO_PRESETS = ("toy", "tiny")

# Two characters drawn in code for `tiny`: (name, token, class word, body colour, shape).
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

# The toy demo: its world and its character.
TOY_WORLD = {"clips": 28, "seed": 7}
TOY_CHARACTER = {"name": "Pip", "token": "<pip>", "word": "toy", "photos": "pip"}
TOY_TAU = 1.0  # the whole schedule follows the clip's depth: the layout a person checks by eye


def run_demo(out_dir, preset: str = "toy", progress: Progress | None = None) -> dict:
    """Run every step into `out_dir` on `preset` (one of DEMO_PRESETS); returns {"index", "story",
    "render": paths, "manifest": the render's Manifest (story/manifest.py)}.

    progress: a `Progress` told each step; None reports nothing.
    """
    from storyreel.story.render import RenderOptions, render_story

    if preset not in DEMO_PRESETS:
        raise UserError(f"--models {preset!r}: the demo runs on {' or '.join(DEMO_PRESETS)}")
    out = Path(out_dir)
    progress = progress or Progress("demo", quiet=True)
    story_text = (_toy_inputs if preset == "toy" else _tiny_inputs)(out, progress)
    progress.update(force=True, step="4/5 story file")
    story = out / "story.yaml"
    write_text_atomic(story, story_text)
    progress.update(force=True, step="5/5 render")
    manifest = render_story(story, out / "index", out / "render", RenderOptions(preset=preset))
    return {"index": str(out / "index"), "story": str(story), "render": str(out / "render"), "manifest": manifest}


def _toy_inputs(out: Path, progress: Progress) -> str:
    """Steps 1-3 on the toy preset; returns the story file's text."""
    from storyreel import index
    from storyreel.toyworld import write_world

    progress.update(force=True, step="1/5 toy-world videos")
    truths = write_world(out / "videos", **TOY_WORLD)
    progress.update(force=True, step="2/5 index")
    index.build(out / "videos", out / "index", index.BuildSettings(preset="toy"))
    progress.update(force=True, step="3/5 character pack")
    pack = out / "packs" / "pip.safetensors"
    if not pack.is_file():  # a rerun keeps the pack, so the story's plots stay unchanged
        _toy_pack(pack)
    return toy_story(truths)


def toy_story(truths: list[dict]) -> str:
    """A story in which Pip stands in for the object of three clips of different scenes: each plot's
    query is that clip's caption without its camera phrase, its motion the clip's camera move."""
    from storyreel.toyworld.scenes import SCENE_PHRASES

    chosen, scenes = [], set()
    for truth in truths:
        if truth["scene"] not in scenes:
            scenes.add(truth["scene"])
            chosen.append(truth)
    character = TOY_CHARACTER
    lines = ["title: Pip's day out", "characters:",
             f'  "{character["token"]}": {{pack: packs/pip.safetensors, name: {character["name"]}, '
             f'word: {character["word"]}}}',
             f"defaults: {{tau: {TOY_TAU}, seed: 0}}", "plots:"]
    for truth in chosen[:3]:
        query = truth["caption"].split(",")[0]
        lines += [f"  - text: {character['name']} {SCENE_PHRASES[truth['scene']]}.",
                  f"    query: {query}", f"    motion: {truth['camera_motion']}"]
    return "\n".join(lines) + "\n"


def _toy_pack(pack: Path) -> None:
    """Pip's pack: the toy preset's trained one when it ships one, else trained here on Pip's photos."""
    from storyreel.core.models import get_preset
    from storyreel.toyworld import write_character_photos
    from storyreel.training.train import TrainSettings, train_character

    pack.parent.mkdir(parents=True, exist_ok=True)
    shipped = Path(get_preset("toy").generator.base).parent / "characters" / pack.name
    if shipped.is_file():
        shutil.copyfile(shipped, pack)
        return
    photos = pack.parent.parent / "characters" / "pip"
    write_character_photos(photos, TOY_CHARACTER["photos"], 12)
    train_character(photos, pack, TrainSettings(token=TOY_CHARACTER["token"], init_word=TOY_CHARACTER["word"],
                                                steps=150, frames=4), preset="toy")


def _tiny_inputs(out: Path, progress: Progress) -> str:
    """Steps 1-3 on the tiny preset; returns the story file's text."""
    from storyreel import index
    from storyreel.synthetic import make_corpus
    from storyreel.training.train import TrainSettings, train_character

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
    return STORY


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
