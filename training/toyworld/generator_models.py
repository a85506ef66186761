"""The toy generator's architectures and its training steps (diffusers' example recipes, shrunk).

Sizes follow measured training speeds on a 2-core CPU (docs/toyworld.md):
64×64 frames, a VAE to 16×16×4 latents (factor 4: the pipeline reads it from the VAE's three
levels), a (32, 64, 64) UNet with cross-attention at 8×8 and 4×4 only, a 2-layer 64-wide CLIP text
encoder over CLIP's real BPE vocabulary, a ControlNet copied from the UNet, a MotionAdapter of the
same widths (trained by training/toyworld/motion.py). The noise schedule is cosine
(`squaredcos_cap_v2`): at 16×16 the layout is decided in the high-noise steps, and a linear schedule
spends too few of them there.

The toy models sample with DDIM from timestep 951 down ("leading" spacing), not from 999: the cosine
schedule's last timestep keeps almost no signal (ᾱ ≈ 2e-9), and a sampler that starts there divides
the noise prediction's error by √ᾱ; DDIM, DDPM, Euler and DPM-Solver all turned it into the same
blotches whatever the prompt. At 951 ᾱ ≈ 0.006. The predicted clean latents are also clipped to
±CLIP_RANGE (latents have unit variance). Both are written into the base model's scheduler folder and
repeated in core/presets/toy.json (whose AnimateDiff settings would otherwise override them).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

BLOCKS = (32, 64, 64)  # UNet, ControlNet and MotionAdapter widths
VAE_BLOCKS = (16, 32, 64)  # three levels: 64×64 -> 16×16
LATENT_CHANNELS = 4
TEXT_WIDTH = 64
NORM_GROUPS = 16
TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"
CLIP_RANGE = 4.0


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=VAE_BLOCKS, layers_per_block=1,
                         latent_channels=LATENT_CHANNELS, norm_num_groups=8, sample_size=64,
                         mid_block_add_attention=False)  # attention over 16×16 costs more than it gives here


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_attention_heads=2, num_hidden_layers=2,
        vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=BLOCKS,
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8, norm_num_groups=NORM_GROUPS)


def build_motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(block_out_channels=BLOCKS, motion_layers_per_block=1, motion_norm_num_groups=NORM_GROUPS,
                         motion_num_attention_heads=4, motion_max_seq_length=32)


def build_controlnet(unet):
    """A ControlNet initialised from the UNet; its hint encoder downsamples twice (64×64 -> 16×16 latents)."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32))


def noise_schedule():
    """The DDPM training schedule; `sampling_scheduler` writes the same betas for DDIM."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE, clip_sample=False)


def sampling_scheduler(training):
    """DDIM on the training betas. The betas are written out (`trained_betas`) because the pipeline's
    scheduler spec overrides `beta_schedule` (core/models.py ANIMATEDIFF_DDIM) and explicit betas win."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE,
                         trained_betas=training.betas.tolist(), clip_sample=True, clip_sample_range=CLIP_RANGE,
                         set_alpha_to_one=False,
                         timestep_spacing="leading", steps_offset=1)


def fit(parameters, loss_of_step, steps: int, lr: float, label: str, progress=None) -> dict:
    """AdamW on `parameters` for `steps` steps of `loss_of_step(step)`; returns what happened (steps,
    losses, time)."""
    parameters = [p for p in parameters if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    losses, started = [], time.perf_counter()
    for step in range(steps):
        loss = loss_of_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if progress is not None and (step + 1) % 50 == 0:
            progress.update(step=step + 1, of=steps, part=label, loss=round(sum(losses[-50:]) / len(losses[-50:]), 4))
    seconds = time.perf_counter() - started
    window = max(1, min(50, steps // 5))
    return {"steps": len(losses), "seconds": round(seconds, 1), "params": sum(p.numel() for p in parameters),
            "loss_start": round(sum(losses[:window]) / window, 5) if losses else None,
            "loss_end": round(sum(losses[-window:]) / window, 5) if losses else None}


def vae_loss(vae, images: torch.Tensor, kl_weight: float = 1e-6) -> torch.Tensor:
    """Reconstruction MSE of images in [-1, 1] plus a small KL term (latents stay near a unit Gaussian)."""
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    return F.mse_loss(reconstruction, images) + kl_weight * posterior.kl().mean()


def noise_prediction_loss(predict, schedule, latents: torch.Tensor, generator) -> torch.Tensor:
    """DDPM's objective: `predict(noisy, timesteps)` must find the noise added at a random timestep.

    `latents`: (B, C, h, w), or (B, C, F, h, w) for a motion UNet (one timestep per clip)."""
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, TRAIN_TIMESTEPS, (latents.shape[0],), generator=generator)
    return F.mse_loss(predict(schedule.add_noise(latents, noise, timesteps), timesteps), noise)
