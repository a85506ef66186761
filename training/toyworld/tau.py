"""τ trades structure against a character's identity (Animate-A-Story Fig. 5), on held-out toy clips.

    rows = measure(weights_dir, world_dir)

Structure: each held-out clip's caption sampled over its own depth hint at every τ; the toy depth model
(the preset's, through storyreel.depth, stabilized to [0, 1] like the hint) estimates the frames' depth,
compared per frame with the hint (Spearman, Pearson) and, as chance, with the hint of another held-out
clip of the same scene (every scene's ground is nearer at the bottom, so any clip's hint of that scene
agrees in part). Object nearer: how often the depth estimate is higher inside the hint's object than in a
ring around it, beside the same with the other clip's object (chance).

Identity: with the character pack weights_dir/characters/pip.safetensors (absent: the identity columns say
so), "<pip> <the clip's scene phrase>" sampled through generation/generate.py ClipGenerator over the same
hints (written as depth videos): toy-CLIP image cosine of the frames to the mean of pip's photos, and the
share of pixels near pip's body or head colour; the structure numbers of those samples beside them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from storyreel.training.toyworld.characters import depth_videos, generate_clips, identity_colour
from storyreel.training.toyworld.generator import SAMPLE_FRAMES, SAMPLING, TAUS, load_pipeline, sample, toy_preset
from storyreel.training.toyworld.generator_data import read_world

FOLDERS = ("base", "motion_adapter", "controlnet")
CHARACTER, TOKEN = "pip", "<pip>"
ABLATION_WORD = "a toy"  # the pack's init word: the prompt without the character
PACK = Path("characters") / f"{CHARACTER}.safetensors"  # under weights_dir
PHOTOS = 12  # pip's photos the identity is compared with (character_images seed 0, as `character train` saw)
RING = 3  # pixels around the object that count as its surroundings


def measure(weights_dir: Path, world_dir: Path, clips: int = 12, identity_clips: int = 6) -> list[dict]:
    """Rows: the real frames (ceiling), then one per τ (see module doc); first `clips` held-out clips for
    structure, the first `identity_clips` of them for identity, SAMPLE_FRAMES frames each, seed = clip number."""
    from storyreel import depth

    weights_dir = Path(weights_dir)
    held = read_world(Path(world_dir), "heldout")[:clips]
    others = [_same_scene_other(held, k) for k in range(len(held))]
    model = depth.create_depth_model(depth.model_for_preset(toy_preset(weights_dir)), device="cpu")

    def structure(frames_per_clip, clip_numbers) -> dict:
        return structure_scores(model, frames_per_clip, [held[k] for k in clip_numbers],
                                [held[others[k]] for k in clip_numbers])

    rows = [{"row": "real frames (ceiling)", **structure([c.frames[:SAMPLE_FRAMES] for c in held], range(len(held))),
             "clips": len(held)}]
    pipe = load_pipeline(weights_dir)
    for tau in TAUS:
        frames = [sample(pipe, c.caption, c.hint[:SAMPLE_FRAMES], tau, seed=k) for k, c in enumerate(held)]
        rows.append({"row": f"tau {tau} (caption)", "tau": tau, **structure(frames, range(len(held))),
                     "clips": len(held), **SAMPLING})
    pack = weights_dir / PACK
    if not pack.is_file():
        return rows + [{"row": "identity", "identity": f"no character pack at {pack}"}]
    del pipe
    picked = range(min(identity_clips, len(held)))
    judge = IdentityJudge(weights_dir)
    runs = [(tau, True) for tau in TAUS] + [(0.0, False)]
    for (tau, with_pack), frames in zip(runs, character_samples(weights_dir, pack, [held[k] for k in picked], runs)):
        name = f"{TOKEN} pack" if with_pack else f"'{ABLATION_WORD}', pack silenced"
        rows.append({"row": f"tau {tau} ({name})", "tau": tau, **structure(frames, picked),
                     **judge.scores(frames), "clips": len(picked)})
    rows.append({"row": f"{CHARACTER} photos (identity ceiling)", **judge.scores(judge.held_photos[None])})
    return rows


def _same_scene_other(held, k: int) -> int:
    """The next held-out clip after `k` whose caption has the same scene phrase (the next clip if none)."""
    scene = scene_phrase(held[k].caption)
    for step in range(1, len(held)):
        if scene_phrase(held[(k + step) % len(held)].caption) == scene:
            return (k + step) % len(held)
    return (k + 1) % len(held)


def scene_phrase(caption: str) -> str:
    """'in a grass field' of 'a red circle in a grass field, the camera pans left'."""
    from storyreel.toyworld.scenes import SCENE_PHRASES

    return next(phrase for phrase in SCENE_PHRASES.values() if f" {phrase}" in caption)


def structure_scores(model, frames_per_clip, clips, other_clips) -> dict:
    """Mean per-frame agreement of the depth model's (stabilized) estimate of each clip's frames with its
    own hint and with the other clip's hint, and the object-nearer shares."""
    from storyreel.depth import stabilize

    own, chance = [], []
    for frames, clip, other in zip(frames_per_clip, clips, other_clips):
        estimate = stabilize(model.predict(frames))
        count = len(estimate)
        own.append(_agreement(estimate, clip.hint[:count], clip.named[:count]))
        chance.append(_agreement(estimate, other.hint[:count], other.named[:count]))
    mean = {key: round(float(np.mean([scores[key] for scores in own])), 3) for key in own[0]}
    mean_chance = {f"{key}_other_hint": round(float(np.mean([scores[key] for scores in chance])), 3)
                   for key in chance[0]}
    return {key: value for pair in zip(mean.items(), mean_chance.items()) for key, value in pair}


def _agreement(estimate: np.ndarray, hint: np.ndarray, named: np.ndarray) -> dict:
    from scipy.ndimage import binary_dilation
    from scipy.stats import spearmanr

    spearman, pearson, nearer = [], [], []
    for frame, target, mask in zip(estimate, hint, named):
        spearman.append(np.nan_to_num(spearmanr(frame.ravel(), target.ravel())[0]))  # constant frame: 0
        pearson.append(np.nan_to_num(np.corrcoef(frame.ravel(), target.ravel())[0, 1]))
        ring = binary_dilation(mask, iterations=RING) & ~mask
        if mask.any() and ring.any():
            nearer.append(frame[mask].mean() > frame[ring].mean())
    return {"spearman": float(np.mean(spearman)), "pearson": float(np.mean(pearson)),
            "object_nearer": float(np.mean(nearer)) if nearer else 0.0}


class IdentityJudge:
    """How much frames look like the character: toy-CLIP image cosine to the mean of its photos, and the
    share of pixels near its body or head colour (characters.py `identity_colour`)."""

    def __init__(self, weights_dir: Path):
        from storyreel.index.embed import load_clip
        from storyreel.toyworld import character_images

        self.clip = load_clip(toy_preset(weights_dir), device="cpu", dtype=torch.float32)
        photos = character_images(CHARACTER, PHOTOS, seed=0)
        centre = self.clip.embed_images(photos).mean(0)
        self.centre = centre / np.linalg.norm(centre)
        self.held_photos = character_images(CHARACTER, 8, seed=1)  # photos the centre was not made of

    def scores(self, frames_per_clip) -> dict:
        cosines = [float((self.clip.embed_images(frames) @ self.centre).mean()) for frames in frames_per_clip]
        shares = [identity_colour(frames, CHARACTER) for frames in frames_per_clip]
        return {"identity_clip_cosine": round(float(np.mean(cosines)), 3),
                "identity_colour_share": round(float(np.mean(shares)), 4)}


def character_samples(weights_dir: Path, pack: Path, clips, runs) -> list[list[np.ndarray]]:
    """Per run (τ, with the character), frames over each clip's hint through ClipGenerator with the pack
    loaded: "<pip> <scene phrase>", or "a toy <scene phrase>" with the pack's LoRA silenced."""
    from storyreel.generation.generate import ClipGenerator

    generator = ClipGenerator(toy_preset(weights_dir), characters=[pack], device="cpu", dtype=torch.float32)
    with tempfile.TemporaryDirectory() as scratch:
        hints = depth_videos([clip.hint[:SAMPLE_FRAMES] for clip in clips], Path(scratch))
        return [generate_clips(generator, [f"{TOKEN if with_pack else ABLATION_WORD} {scene_phrase(c.caption)}"
                                           for c in clips], hints, Path(scratch), tau,
                               present=None if with_pack else ()) for tau, with_pack in runs]
