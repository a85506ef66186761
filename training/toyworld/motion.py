"""The toy motion stage: an AnimateDiff motion adapter trained on the toy world's clips over the image
model the generator stage wrote (out_dir/base/), which stays frozen.

    summary = train(world_dir, out_dir)   # out_dir/motion_adapter/
    rows = measure(out_dir, world_dir)    # consecutive frames' likeness, against frames sampled one at a time

AnimateDiff's recipe: the image UNet frozen inside a UNetMotionModel, only the motion modules learn,
on FRAMES-frame windows of the train clips. Like AnimateDiff's own motion module, each temporal
transformer's output projection starts at zero, so training starts from the image model exactly;
diffusers' MotionAdapter starts it random, which adds noise to every frame until training undoes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from storyreel.training.toyworld import generator as toy_generator
from storyreel.training.toyworld import generator_models as models
from storyreel.training.toyworld.generator import SAMPLE_FRAMES, SAMPLING, TrainingData, load_pipeline
from storyreel.training.toyworld.generator_data import read_world

FOLDERS = ("base", "motion_adapter", "controlnet")  # what measure() samples
STEPS, BATCH, FRAMES, LEARNING_RATE = 1000, 4, 8, 5e-4
CLIPS = 6  # held-out captions measure() samples


def train(world_dir: Path, out_dir: Path, seed: int = 0, progress=None, steps: int = STEPS) -> dict:
    """Train the motion adapter on the train split over out_dir/base/; writes out_dir/motion_adapter/ and
    returns its size, time and losses."""
    from diffusers import UNetMotionModel

    folder = Path(out_dir)
    shutil.rmtree(folder / "motion_adapter", ignore_errors=True)
    vae, text_encoder, unet, tokenizer = _image_model(folder / "base")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, hints, token_ids = toy_generator.world_tensors(Path(world_dir), tokenizer)
    latents = toy_generator.encode_latents(vae, images, scale=vae.config.scaling_factor)
    data = TrainingData(latents, hints, token_ids, models.noise_schedule(), generator, progress)
    motion_unet = UNetMotionModel.from_unet2d(unet, zero_output_projections(models.build_motion_adapter()))
    motion_unet.freeze_unet2d_params()
    summary = models.fit(motion_unet.parameters(), _loss(motion_unet, text_encoder, data), steps, LEARNING_RATE,
                         "motion", progress)
    motion_unet.save_motion_modules(folder / "motion_adapter")
    toy_generator.store_half_precision(folder / "motion_adapter")
    return {**summary, "frames": FRAMES, "batch": BATCH}


def _image_model(base: Path):
    """The generator stage's VAE, text encoder, UNet (fp32, frozen) and tokenizer from `base`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    parts = [cls.from_pretrained(base / name, variant="fp16").float().eval().requires_grad_(False)
             for cls, name in ((AutoencoderKL, "vae"), (CLIPTextModel, "text_encoder"), (UNet2DConditionModel, "unet"))]
    return (*parts, CLIPTokenizer.from_pretrained(base / "tokenizer"))


def zero_output_projections(adapter):
    """`adapter` with every temporal transformer's output projection at zero (each motion module then adds
    nothing to its input: the UNetMotionModel computes what the image UNet does)."""
    with torch.no_grad():
        for module in adapter.modules():
            if isinstance(getattr(module, "proj_out", None), torch.nn.Linear):
                module.proj_out.weight.zero_()
                module.proj_out.bias.zero_()
    return adapter


def _loss(motion_unet, text_encoder, data: TrainingData):
    """The diffusion loss of one batch of FRAMES-frame windows (one caption per clip), as fit() takes it."""
    latents, generator = data.latents, data.generator
    clips, frames = latents.shape[:2]

    def loss(step):
        rows = toy_generator.random_rows(clips, BATCH, generator)
        starts = torch.randint(0, frames - FRAMES + 1, (len(rows),), generator=generator)
        windows = torch.stack([latents[r, s:s + FRAMES] for r, s in zip(rows.tolist(), starts.tolist())])
        with torch.no_grad():
            prompts = toy_generator.prompt_rows(data.token_ids, rows, generator)
            embeddings = text_encoder(prompts)[0].repeat_interleave(FRAMES, 0)
        return models.noise_prediction_loss(
            lambda noisy, t: motion_unet(noisy, t, encoder_hidden_states=embeddings).sample,
            data.schedule, windows.transpose(1, 2), generator)

    return loss


def measure(out_dir: Path, world_dir: Path, clips: int = CLIPS) -> list[dict]:
    """On the first `clips` held-out captions (text only, seed = clip number): toy-CLIP cosine and mean
    absolute pixel change of consecutive frames of SAMPLE_FRAMES-frame clips: with the motion adapter,
    with the image model alone (each frame sampled on its own, seed 1000·clip + frame), and of the real
    clips."""
    from storyreel.core.models import get_preset
    from storyreel.index.embed import load_clip
    from storyreel.training.toyworld.zero import consistency, independent_frames

    held = read_world(Path(world_dir), "heldout")[:clips]
    clip_model = load_clip(get_preset("toy"))
    animated = load_pipeline(Path(out_dir))
    with_adapter = [consistency(toy_generator.sample_text_only(animated, c.caption, k), clip_model)
                    for k, c in enumerate(held)]
    image_model = load_pipeline(Path(out_dir), backend="t2v-zero")
    alone = [consistency(independent_frames(image_model, c.caption, SAMPLE_FRAMES, k), clip_model)
             for k, c in enumerate(held)]
    real = [consistency(c.frames[:SAMPLE_FRAMES], clip_model) for c in held]
    return [_row("motion adapter (animatediff)", with_adapter), _row("image model, frame by frame", alone),
            _row("real frames (ceiling)", real)]


def _row(name: str, scores: list[tuple[float, float]]) -> dict:
    cosine, change = np.mean(scores, axis=0)
    return {"row": name, "consecutive_cosine": round(float(cosine), 4), "consecutive_change": round(float(change), 2),
            "clips": len(scores), "frames": SAMPLE_FRAMES, "tau": 0.0, **SAMPLING}
