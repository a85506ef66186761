"""The toy characters stage and effect: Animate-A-Story's TimeInv + LoRA packs (its table 2, in miniature).

    summary = train(world_dir, out_dir)   # out_dir/characters/{pip,bo,zuzu}.safetensors, on out_dir's generator
    rows = measure(out_dir, world_dir)    # identity and text fit of TimeInv + LoRA against its ablations

Each pack is trained by the project's `character train` code (training/train.py `train_character`) from
photos of one held-out character (storyreel.toyworld `write_character_photos`; never in a world clip).
measure() trains the ablations with the committed pack's own settings (same steps, frames, rate, seed):
textual inversion alone (mode "ti"), the LoRA alone (mode "lora": the token stays at the init word's
embedding) and no pack at all (the init word in the prompt). It samples every variant through
`ClipGenerator` (generation/generate.py, the `generate --character` path) from the text alone (TAU = 0: a
held-out clip's depth is the structure source the backend takes, but guides no step) and scores the
frames: identity colour (share of pixels near the character's body and head colours; the toy CLIP never
saw a character, so this is the identity measure that can show), CLIP-I against the photos and CLIP-T
against the prompt with the token read as the init word.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.training.toyworld.generator import SAMPLE_FRAMES, SAMPLING, toy_preset

FOLDERS = ("characters",)
NAMES = ("pip", "bo", "zuzu")
INIT_WORD = "toy"  # one token of the generator's tokenizer; no toy caption uses it, so it means nothing yet
PHOTOS = 12
# 4 frames per static pseudo-video: the clip repeats one photo, so more frames add compute, not signal;
# at 4 frames a CPU step costs ~half an 8-frame one, which buys twice the steps in the same time.
SETTINGS = {"steps": 400, "frames": 4, "learning_rate": 1e-3}
VARIANTS = {"timeinv": "TimeInv + LoRA", "ti": "textual inversion alone", "lora": "LoRA alone",
            "none": "no pack (init word)"}
SCENES = ("grass field", "beach", "room")  # the night sky is too dark to show a character's colours
SAMPLES_PER_SCENE = 1
FRAMES = SAMPLE_FRAMES
# 0: text only (depth guides no step; the backend still takes a structure source). The held-out clips hold
# shapes, not characters: at τ = 1 their depth draws a shape's outline on every step, leaving the character
# less room to appear (the `tau` effect measures identity at every τ).
TAU = 0.0
COLOUR_RADIUS = 48.0  # RGB distance within which a pixel counts as the character's colour


def train(world_dir: Path, out_dir: Path, seed: int = 0, progress=None, names=NAMES) -> dict:
    """One TimeInv + LoRA pack per character into out_dir/characters/, on the generator in out_dir (its
    base/, motion_adapter/, controlnet/); `progress`: a core/progress.py Progress, or None. The photos come
    from storyreel.toyworld, so `world_dir` is not read."""
    folder = Path(out_dir) / "characters"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    summary = {}
    for name in names:
        summary[name] = train_pack(name, Path(out_dir), folder / f"{name}.safetensors", {**SETTINGS, "seed": seed},
                                   progress=progress.child(f"<{name}>") if progress else None)
    return summary


def train_pack(name: str, weights_dir: Path, out: Path, settings: dict, mode: str = "timeinv",
               progress=None) -> dict:
    """One pack of `mode` for character `name` from its photos, with the TrainSettings fields in `settings`;
    `progress`: a core/progress.py Progress told each step, or None."""
    from storyreel.toyworld import write_character_photos
    from storyreel.training.train import TrainSettings, train_character

    start = time.monotonic()
    with tempfile.TemporaryDirectory() as photos:
        write_character_photos(photos, name, PHOTOS, seed=0)
        result = train_character(photos, out, TrainSettings(token=f"<{name}>", init_word=INIT_WORD, mode=mode,
                                                            checkpoint_every=10**6, **settings),
                                 preset=toy_preset(weights_dir), progress=progress)
    Path(result.pop("checkpoint")).unlink(missing_ok=True)  # a finished pack needs no resume point
    seconds = time.monotonic() - start
    return {**result, "seconds": round(seconds, 1), "steps_per_s": round(result["steps"] / seconds, 2)}


def measure(weights_dir: Path, world_dir: Path, names=("pip", "bo")) -> list[dict]:
    """Per variant (VARIANTS), over `names` × SCENES × SAMPLES_PER_SCENE clips: identity colour, CLIP-I,
    CLIP-T; plus the photos' and real held-out frames' identity colour (ceiling and floor)."""
    from storyreel.core.models import get_preset
    from storyreel.index.embed import load_clip
    from storyreel.toyworld import character_images
    from storyreel.training.toyworld.generator_data import read_world

    weights_dir = Path(weights_dir)
    held = read_world(Path(world_dir), "heldout")[:len(SCENES) * SAMPLES_PER_SCENE]
    embedder = load_clip(get_preset("toy"))
    scores = {variant: [] for variant in VARIANTS}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        structures = depth_videos([c.hint[:FRAMES] for c in held], scratch)
        for name in names:
            photos = character_images(name, PHOTOS, seed=0)
            packs = _variant_packs(name, weights_dir, scratch)
            for variant, pack in packs.items():
                clips = sample_clips(weights_dir, pack, name, structures, scratch)
                scores[variant] += [_scores(frames, prompt, name, photos, embedder) for prompt, frames in clips]
            rows.append({"row": f"<{name}> photos (ceiling)", "identity_colour": identity_colour(photos, name),
                         "real_frames_identity_colour": identity_colour(
                             np.concatenate([c.frames[:FRAMES] for c in held]), name)})
    for variant, label in VARIANTS.items():
        mean = np.mean(scores[variant], axis=0)
        rows.append({"row": f"characters: {label}", "variant": variant, "identity_colour": round(float(mean[0]), 4),
                     "clip_i": round(float(mean[1]), 4), "clip_t": round(float(mean[2]), 4),
                     "clips": len(scores[variant]), "characters": ",".join(names), "tau": TAU, **SAMPLING})
    return rows


def _variant_packs(name: str, weights_dir: Path, scratch: Path) -> dict:
    """variant -> pack file (None: no pack): the committed TimeInv + LoRA pack, its ablations trained here
    with the same settings."""
    from storyreel.generation.characters.pack import load_pack

    committed = weights_dir / "characters" / f"{name}.safetensors"
    if not committed.is_file():
        raise UserError(f"no character pack {committed}: run the characters stage first "
                        "(scripts/train_toyworld.py --stages characters)")
    trained = load_pack(committed).settings
    settings = {key: trained[key] for key in ("steps", "frames", "learning_rate", "seed")}
    packs = {"timeinv": committed}
    for mode in ("ti", "lora"):
        packs[mode] = scratch / f"{name}_{mode}.safetensors"
        train_pack(name, weights_dir, packs[mode], settings, mode)
    packs["none"] = None
    return packs


def depth_videos(hints, scratch: Path) -> list[Path]:
    """Depth hints (F, H, W) in [0, 1] as depth videos (`storyreel depth`'s format): structure sources."""
    from storyreel.depth.media import write_depth_video

    paths = []
    for k, hint in enumerate(hints):
        paths.append(scratch / f"structure_{k}.mp4")
        write_depth_video(paths[-1], hint, fps=8.0, meta={"model": "toy world depth (truth)"})
    return paths


def sample_clips(weights_dir: Path, pack, name: str, structures: list[Path], scratch: Path) -> list[tuple]:
    """(prompt as CLIP-T reads it, uint8 frames) per structure source, generated the way `storyreel generate
    --character` does: with pack file `pack` and its token, or (None) no pack and the init word. Structure k
    gets scene SCENES[k // SAMPLES_PER_SCENE] and seed k."""
    from storyreel.generation.generate import ClipGenerator
    from storyreel.toyworld.scenes import SCENE_PHRASES

    generator = ClipGenerator(toy_preset(weights_dir), characters=[pack] if pack else ())
    subject = f"<{name}>" if pack else INIT_WORD
    prompts = [f"{subject} {SCENE_PHRASES[SCENES[k // SAMPLES_PER_SCENE % len(SCENES)]]}"
               for k in range(len(structures))]
    frames = generate_clips(generator, prompts, structures, scratch, TAU)
    return [(prompt.replace(f"<{name}>", INIT_WORD), clip) for prompt, clip in zip(prompts, frames)]


def generate_clips(generator, prompts, structures, scratch: Path, tau: float, present=None) -> list[np.ndarray]:
    """uint8 frames (FRAMES, 64, 64, 3) of each prompt over its depth video through `generator` (a
    ClipGenerator, generation/generate.py) at `tau`, seed = its position; `present` as ClipRequest takes it
    (None: the packs whose tokens the prompt names)."""
    from storyreel.generation.generate import ClipRequest
    from storyreel.generation.settings import GenerationSettings

    clips = []
    for k, (prompt, structure) in enumerate(zip(prompts, structures)):
        settings = GenerationSettings(frames=FRAMES, height=64, width=64, tau=tau, seed=k, **SAMPLING)
        request = ClipRequest(prompt, str(structure), structure_kind="depth", present=present)
        clips.append(generator.generate(request, scratch / "clip.mp4", settings).frames)
    return clips


def _scores(frames: np.ndarray, prompt: str, name: str, photos: np.ndarray, embedder) -> tuple[float, float, float]:
    """(identity colour, CLIP-I against the photos, CLIP-T against `prompt`) of one clip's frames."""
    from storyreel.generation.evaluate import clip_image_score, clip_text_score

    embedded = embedder.embed_images(frames)
    return (identity_colour(frames, name), clip_image_score(embedded, embedder.embed_images(photos)),
            clip_text_score(embedded, embedder.embed_text([prompt])[0]))


def identity_colour(frames: np.ndarray, name: str) -> float:
    """Share of the pixels of uint8 frames (..., H, W, 3) within COLOUR_RADIUS of character `name`'s body
    or head colour (storyreel.toyworld CHARACTERS)."""
    from storyreel.toyworld import CHARACTERS

    pixels = frames.reshape(-1, 3).astype(np.float32)
    look = CHARACTERS[name]
    near = [np.linalg.norm(pixels - np.float32(colour), axis=1) <= COLOUR_RADIUS for colour in (look.body, look.head)]
    return round(float(np.mean(near[0] | near[1])), 4)
