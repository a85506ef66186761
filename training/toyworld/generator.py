"""The toy generator stage: a VAE, a CLIP text encoder, a UNet and a depth ControlNet trained on the toy
world, saved in the layout generation/components.py loads for the `default` preset (the motion adapter
is the next stage's, training/toyworld/motion.py).

    summary = train(world_dir, out_dir)   # out_dir/{base,controlnet}/
    rows = measure(out_dir, world_dir)    # caption colour and structure IoU per τ on held-out clips

Training order (each part frozen once trained): the VAE (reconstruction); the text encoder and UNet
together through the diffusion loss on the VAE's latents (captions dropped 15% of the time, so the
empty prompt is the unconditional branch classifier-free guidance needs); the ControlNet from the UNet
on the true depth hint. The VAE and the UNet also learn from paintings (storyreel.toyworld.paintings,
captioned "a painting"): a real base model draws any colour, and personalization needs one that can.
Architectures: generator_models.py; the world as read and measured: generator_data.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from storyreel.training.toyworld import generator_models as models
from storyreel.training.toyworld.generator_data import colour_masks, dominant_colour, mask_iou, read_world

# Steps each part trains for (fixed, so a rerun trains the same); `train(steps=...)` shrinks them for a quick run.
STEPS = {"vae": 1500, "unet": 3000, "controlnet": 2000}
BATCH = {"vae": 16, "unet": 32, "controlnet": 32}
LEARNING_RATE = {"vae": 1e-3, "unet": 5e-4, "controlnet": 1e-3}
CAPTION_DROPOUT = 0.15
# Share of each batch that is a painting, from a fixed pool; the ControlNet and motion adapter learn from
# the world alone (a painting has no depth and no motion).
PAINTING_SHARE = {"vae": 0.5, "unet": 0.25}
PAINTING_POOL = 4000
PAINTING_CAPTION = "a painting"
TAUS = (0.0, 0.25, 0.5, 1.0)
SAMPLING = {"steps": 20, "cfg": 3.0}  # what the measures and tests sample with
SAMPLE_FRAMES = 8  # frames of each clip the measures sample
WRITTEN = ("base", "controlnet")  # this stage's folders
FOLDERS = ("base", "motion_adapter", "controlnet")  # what the pipeline (and so every measure) reads


def train(world_dir: Path, out_dir: Path, seed: int = 0, progress=None, steps: dict | None = None) -> dict:
    """Train every part on the world's train split; writes out_dir/{base,controlnet}/ (the layout a
    preset names) and returns sizes, times, losses."""
    from storyreel.generation.tiny import offline_clip_tokenizer

    steps = {**STEPS, **(steps or {})}
    folder = Path(out_dir)
    for part in WRITTEN:  # the other stages' folders beside them stay
        shutil.rmtree(folder / part, ignore_errors=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = offline_clip_tokenizer()
    images, hints, token_ids = world_tensors(Path(world_dir), tokenizer)
    painted = painting_tensors(seed)
    summary = {"clips": len(images), "paintings": len(painted)}
    vae = models.build_vae()
    summary["vae"] = _train_vae(vae, images, painted, steps["vae"], generator, progress)
    data = TrainingData(encode_latents(vae, images), hints, token_ids, models.noise_schedule(), generator, progress,
                        encode_latents(vae, painted[:, None], vae.config.scaling_factor)[:, 0])
    text_encoder, unet = models.build_text_encoder(), models.build_unet()
    summary["unet"] = _train_unet(unet, text_encoder, data, steps["unet"])
    for module in (vae, unet, text_encoder):
        module.requires_grad_(False)
    controlnet = models.build_controlnet(unet)
    summary["controlnet"] = _train_controlnet(controlnet, unet, text_encoder, data, steps["controlnet"])
    _unused_token_rows_to_zero(text_encoder, token_ids)
    base = folder / "base"
    vae.save_pretrained(base / "vae")
    unet.save_pretrained(base / "unet")
    text_encoder.save_pretrained(base / "text_encoder")
    tokenizer.save_pretrained(base / "tokenizer")
    models.sampling_scheduler(data.schedule).save_pretrained(base / "scheduler")
    controlnet.save_pretrained(folder / "controlnet")
    for part in WRITTEN:
        store_half_precision(folder / part)
    return summary


def world_tensors(world_dir: Path, tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The train split as tensors: frames (N, T, 3, H, W) in [-1, 1], depth hints (N, T, 3, H, W) in
    [0, 1], and token ids (N + 2, 77) of each clip's caption, then PAINTING_CAPTION, then the empty prompt."""
    clips = read_world(world_dir, "train")
    images = torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    hints = torch.from_numpy(np.stack([c.hint for c in clips]))[:, :, None].expand(-1, -1, 3, -1, -1)
    token_ids = tokenizer([c.caption for c in clips] + [PAINTING_CAPTION, ""], padding="max_length", max_length=77,
                          truncation=True, return_tensors="pt").input_ids
    return images, hints, token_ids


def painting_tensors(seed: int) -> torch.Tensor:
    """PAINTING_POOL paintings (P, 3, H, W) in [-1, 1]."""
    from storyreel.toyworld.paintings import paintings

    return torch.from_numpy(paintings(PAINTING_POOL, seed=seed)).permute(0, 3, 1, 2).float() / 127.5 - 1


def store_half_precision(folder: Path) -> None:
    """Rewrite every weights file under `folder` as its fp16 variant (`x.safetensors` -> `x.fp16.safetensors`):
    half the bytes to commit; the loader reads the variant when it is the only one and computes in fp32
    (generation/components.py `_variant`)."""
    from safetensors.torch import load_file, save_file

    for path in sorted(Path(folder).rglob("*.safetensors")):
        if path.name.endswith(".fp16.safetensors"):
            continue
        tensors = {name: tensor.half() if tensor.is_floating_point() else tensor
                   for name, tensor in load_file(path).items()}
        save_file(tensors, path.with_name(path.name.replace(".safetensors", ".fp16.safetensors")),
                  metadata={"format": "pt"})
        path.unlink()


@dataclass
class TrainingData:
    """What the diffusion parts train on: the train clips' latents and hints, and the training state."""

    latents: torch.Tensor  # (N, T, C, h, w), scaled to unit variance
    hints: torch.Tensor  # (N, T, 3, H, W) in [0, 1], near = bright
    token_ids: torch.Tensor  # (N + 2, 77): each clip's caption, PAINTING_CAPTION, then the empty prompt
    schedule: object  # the DDPM training scheduler
    generator: torch.Generator
    progress: object  # callable(str) or None
    paintings: torch.Tensor | None = None  # (P, C, h, w) latents at the world's scale; None: the world alone


def random_rows(count: int, size: int, generator) -> torch.Tensor:
    return torch.randint(0, count, (size,), generator=generator)


def _train_vae(vae, images: torch.Tensor, painted: torch.Tensor, steps: int, generator, progress) -> dict:
    frames = images.flatten(0, 1)
    painted_rows = round(BATCH["vae"] * PAINTING_SHARE["vae"])

    def loss(step):
        batch = torch.cat([frames[random_rows(len(frames), BATCH["vae"] - painted_rows, generator)],
                           painted[random_rows(len(painted), painted_rows, generator)]])
        return models.vae_loss(vae, batch)

    result = models.fit(vae.parameters(), loss, steps, LEARNING_RATE["vae"], "vae", progress)
    vae.eval().requires_grad_(False)
    return result


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """(N, T, 3, H, W) -> (N, T, C, h, w) posterior means times `scale`. None: the scale that gives unit
    variance, written into the VAE's config (the pipeline divides by it before decoding,
    generation/pipeline.py); a trained VAE's own `config.scaling_factor` gives its training latents again."""
    frames = images.flatten(0, 1)
    means = torch.cat([vae.encode(frames[i:i + 256]).latent_dist.mean for i in range(0, len(frames), 256)])
    if scale is None:
        scale = float(1.0 / means.std())
        vae.register_to_config(scaling_factor=scale)
    return (means * scale).unflatten(0, images.shape[:2])


def prompt_rows(token_ids: torch.Tensor, clip_rows: torch.Tensor, generator) -> torch.Tensor:
    """Token rows for a batch of clips; CAPTION_DROPOUT of them become the empty prompt (the last row)."""
    dropped = torch.rand(len(clip_rows), generator=generator) < CAPTION_DROPOUT
    return token_ids[torch.where(dropped, len(token_ids) - 1, clip_rows)]


def _train_unet(unet, text_encoder, data: TrainingData, steps: int) -> dict:
    latents, token_ids, schedule, generator = data.latents, data.token_ids, data.schedule, data.generator
    clips, frames = latents.shape[:2]
    painted_rows = round(BATCH["unet"] * PAINTING_SHARE["unet"])
    painting_caption = torch.full((painted_rows,), len(token_ids) - 2)

    def loss(step):
        rows = random_rows(clips, BATCH["unet"] - painted_rows, generator)
        picked = torch.cat([latents[rows, torch.randint(0, frames, (len(rows),), generator=generator)],
                            data.paintings[random_rows(len(data.paintings), painted_rows, generator)]])
        prompts = prompt_rows(token_ids, torch.cat([rows, painting_caption]), generator)
        embeddings = text_encoder(prompts)[0]
        return models.noise_prediction_loss(
            lambda noisy, t: unet(noisy, t, encoder_hidden_states=embeddings).sample, schedule, picked, generator)

    parameters = [*unet.parameters(), *text_encoder.parameters()]
    return models.fit(parameters, loss, steps, LEARNING_RATE["unet"], "unet+text", data.progress)


def _train_controlnet(controlnet, unet, text_encoder, data: TrainingData, steps: int) -> dict:
    latents, hints, token_ids, generator = data.latents, data.hints, data.token_ids, data.generator
    clips, frames = latents.shape[:2]

    def loss(step):
        rows = random_rows(clips, BATCH["controlnet"], generator)
        times = torch.randint(0, frames, (len(rows),), generator=generator)
        with torch.no_grad():
            embeddings = text_encoder(prompt_rows(token_ids, rows, generator))[0]

        def predict(noisy, t):
            down, mid = controlnet(noisy, t, encoder_hidden_states=embeddings, controlnet_cond=hints[rows, times],
                                   return_dict=False)
            return unet(noisy, t, encoder_hidden_states=embeddings, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample

        return models.noise_prediction_loss(predict, data.schedule, latents[rows, times], generator)

    result = models.fit(controlnet.parameters(), loss, steps, LEARNING_RATE["controlnet"], "controlnet", data.progress)
    controlnet.eval().requires_grad_(False)
    return result


@torch.no_grad()
def _unused_token_rows_to_zero(text_encoder, token_ids: torch.Tensor) -> None:
    """Rows of the token embedding no training caption uses never learned anything; zeros say so (and
    make the committed file compress to a fraction of its size)."""
    table = text_encoder.get_input_embeddings().weight
    keep = torch.zeros(len(table), dtype=torch.bool)
    keep[token_ids.unique()] = True
    table[~keep] = 0.0


def toy_preset(folder: Path):
    """The `toy` preset with its three generator folders read from `folder` (the committed weights, or a
    retrained copy), loaded the way any swapped-in model is (core/models.py `with_overrides`)."""
    from storyreel.core.models import with_overrides

    return with_overrides("toy", **{role: str(Path(folder) / role) for role in FOLDERS})


def load_pipeline(folder: Path, backend: str = "animatediff"):
    """The project's pipeline of `backend` (generation/settings.py BACKENDS) over the toy weights in `folder`."""
    from storyreel.generation.components import create_components
    from storyreel.generation.settings import pipeline_class

    pipe = pipeline_class(backend).from_components(create_components(toy_preset(folder), backend=backend))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, caption: str, hint: np.ndarray, tau: float, seed: int) -> np.ndarray:
    """uint8 (F, H, W, 3) frames for a caption and a depth hint (F, H, W) in [0, 1], at τ."""
    from storyreel.generation.settings import GenerationSettings

    depth = torch.from_numpy(hint)[:, None]
    settings = GenerationSettings(frames=len(hint), height=hint.shape[1], width=hint.shape[2], tau=tau, seed=seed,
                                  **SAMPLING)
    return pipe(caption, depth, settings).frames


def sample_text_only(pipe, caption: str, seed: int) -> np.ndarray:
    """uint8 (SAMPLE_FRAMES, H, W, 3) frames of `caption` alone: at τ 0 the depth branch never runs, so the
    structure source the pipeline takes is a blank one."""
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return sample(pipe, caption, np.zeros((SAMPLE_FRAMES, size, size), np.float32), 0.0, seed)


def measure(out_dir: Path, world_dir: Path, clips: int = 16) -> list[dict]:
    """On the first `clips` held-out clips (their first SAMPLE_FRAMES frames), one sample per τ each:

    caption colour: share of samples whose dominant colour is the caption's (chance 1/4; the same
    measure on the real frames is its ceiling); structure: IoU of the caption colour's pixels with
    the named object's region in the depth hint (it is what stands out nearer than its surroundings),
    against the IoU with another clip's region (chance); the schedule is recorded beside it.
    """
    pipe = load_pipeline(Path(out_dir))
    held = read_world(Path(world_dir), "heldout")[:clips]
    schedule = pipe.scheduler.config.beta_schedule if pipe.scheduler.config.trained_betas is None else "trained betas"
    real = [c.frames[:SAMPLE_FRAMES] for c in held]
    rows = [{"row": "real frames", "caption_colour_correct": _share(
        dominant_colour(f) == c.colour for f, c in zip(real, held)), "chance": 0.25, "structure_iou": round(float(
            np.mean([mask_iou(colour_masks(f)[c.colour], c.named[:SAMPLE_FRAMES]) for f, c in zip(real, held)])), 3)}]
    rows.append({"row": "vae reconstruction", "psnr_db": psnr(pipe.vae, np.concatenate(real))})
    for tau in TAUS:
        ious, chance_ious, correct = [], [], []
        for k, clip in enumerate(held):
            frames = sample(pipe, clip.caption, clip.hint[:SAMPLE_FRAMES], tau, seed=k)
            correct.append(dominant_colour(frames) == clip.colour)
            mask = colour_masks(frames)[clip.colour]
            ious.append(mask_iou(mask, clip.named[:SAMPLE_FRAMES]))
            chance_ious.append(mask_iou(mask, held[(k + 1) % len(held)].named[:SAMPLE_FRAMES]))
        rows.append({"row": f"tau {tau}", "tau": tau, "caption_colour_correct": _share(correct), "chance": 0.25,
                     "structure_iou": round(float(np.mean(ious)), 3),
                     "structure_iou_other_hint": round(float(np.mean(chance_ious)), 3),
                     "schedule": models.BETA_SCHEDULE, "scheduler_betas": schedule,
                     "clip_sample_range": pipe.scheduler.config.clip_sample_range, **SAMPLING})
    return rows


@torch.no_grad()
def psnr(vae, frames: np.ndarray) -> float:
    """PSNR (dB) of the VAE's reconstruction (posterior mean) of uint8 frames (N, H, W, 3)."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    rebuilt = vae.decode(vae.encode(images).latent_dist.mean).sample.clamp(-1, 1)
    return round(float(10 * torch.log10(4.0 / torch.mean((rebuilt - images) ** 2))), 2)


def _share(flags) -> float:
    flags = list(flags)
    return round(sum(flags) / len(flags), 3)
