"""`StructureGuidedZeroPipeline`: Text2Video-Zero on an image UNet, with a clamped depth ControlNet.

Text2Video-Zero (Khachatryan et al. 2023) makes a video out of any Stable Diffusion *image* model:

* **Motion dynamics in the latents** (text only, `depth=None`). Frame 1 is DDIM-denoised from the
  first step to T (step index t1) and on to T′ (index t0). Its latent at T′ is translated for frame
  k by λ·(k−1)·δ (δ = `settings.motion_field`, λ = `settings.motion_strength`, in pixels of the
  reference's 512×512 flow grid, i.e. a fraction λ/512 of the frame per frame and unit of δ),
  DDPM-forwarded from T′ back to T, and then every frame is denoised from T to 0. Frames equal
  diffusers' deprecated `TextToVideoZeroPipeline` (same RNG order, same warp, same forward noising).
* **Cross-frame attention.** An attention processor (`CrossFrameAttnProcessor`) makes every frame's
  self-attention (attn1) read frame 1's keys and values (per classifier-free-guidance half);
  cross-attention (attn2) keeps its own processor. It is installed for the duration of a call and
  the previous processors are put back, so the UNet can be shared; it calls `attn.to_q/to_k/to_v`,
  so peft LoRA layers (character packs) stay in effect.
* **Depth structure** (`depth` given). The depth ControlNet conditions every frame, with the same τ
  clamp as `StructureGuidedPipeline` (`structure_steps`; after τ the ControlNet is not called). As
  the paper does with ControlNet, all frames start from one shared noise (no δ warping) and use
  cross-frame attention (UNet and ControlNet): the depth's own motion drives the video.
* **Long clips.** More than `settings.window_frames` frames are generated in chunks of
  window_frames − 1 new frames with frame 1 prepended; every chunk starts from the same generator
  state, so frame 1 (and with it identity and appearance) is the same in every chunk, and its
  duplicates are dropped. Each chunk is decoded when it is done: memory is flat in clip length.

    pipe = StructureGuidedZeroPipeline.from_components(create_components("tiny", backend="t2v-zero"))
    out = pipe("a horse galloping", None, GenerationSettings(frames=8, height=64, width=64, steps=50))
    out.frames  # (F, H, W, 3) uint8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from storyreel.core.errors import UserError
from storyreel.core.video import spread_indices
from storyreel.generation.attention import installed_processors
from storyreel.generation.layout_attention import attention_core
from storyreel.generation.pipeline import Run, VideoPipelineBase
from storyreel.generation.settings import GenerationSettings

BACKEND = "t2v-zero"
# The paper's T (at 50 DDIM steps on SD's schedule: step index 47, t = 941) and the steps frame 1 takes from
# T to T′ (the reference's 47 → 44, T′ = 881).
PAPER_T, MOTION_STEPS = 941, 3
# The reference warps on a 512×512 flow grid, then resamples the grid to the latent size.
FLOW_GRID = 512
# Frames and size of a text-only clip when neither the settings nor a depth clip give them.
DEFAULT_FRAMES = 8


# ------------------------------------------------------------------------------------ cross-frame

class CrossFrameAttnProcessor:
    """Self-attention whose keys and values are frame 1's, for every frame of every video in the batch.

    The batch is `videos × frames` (videos = 2 with classifier-free guidance: [negative, positive]);
    `frames` is set by the pipeline before each model call. Cross-attention (an `encoder_hidden_states`
    argument) is plain attention. Queries, keys and values come from `attn.to_q/to_k/to_v`, so LoRA
    layers on those projections apply.
    """

    def __init__(self, frames: int = 1):
        self.frames = frames

    def first_frame(self, tensor: torch.Tensor) -> torch.Tensor:
        """(videos·frames, tokens, dim) → the same shape, every frame replaced by its video's frame 1."""
        frames = self.frames
        if tensor.shape[0] % frames:
            raise ValueError(f"batch of {tensor.shape[0]} is not a whole number of {frames}-frame videos")
        per_video = tensor.unflatten(0, (tensor.shape[0] // frames, frames))
        return per_video[:, :1].expand_as(per_video).flatten(0, 1)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        # self-attention: every frame reads frame 1
        first_frame = self.first_frame if encoder_hidden_states is None else None
        hidden_states = attention_core(attn, hidden_states, encoder_hidden_states, attention_mask, first_frame)

        if image_shape is not None:
            hidden_states = hidden_states.transpose(1, 2).reshape(image_shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_frame_attention(models, processor: CrossFrameAttnProcessor):
    """Context: `processor` on every attn1 of `models` (attn2 untouched); the previous processors come back.
    A layout processor (generation/layout_attention.py) stays outermost, with cross-frame attention inside."""

    def processor_for(name, current):
        if not name.endswith("attn1.processor"):
            return current
        return current.wrap(processor) if hasattr(current, "wrap") else processor

    return installed_processors(models, processor_for)


# ------------------------------------------------------------------------------------- motion

def motion_step_indices(timesteps, t0: int | None = None, t1: int | None = None) -> tuple[int, int]:
    """(t0, t1): step indices counted from the end of the schedule (index j ↔ `timesteps[-j - 1]`).

    Unset: t1 is the index whose timestep is nearest the paper's T = 941, and t0 = t1 − 3, so frame 1
    takes the reference's three steps from T to T′ at any step count (44 and 47 with 50 DDIM steps on SD's
    schedule, the reference's defaults; with 25, T = 921 and T′ = 801). Nearest T′ = 881 instead would
    leave one step at 25 and the moved latent still almost pure noise. With fewer steps t0 stops at 0.
    """
    if t0 is not None and t1 is not None:
        return int(t0), int(t1)
    ascending = torch.as_tensor(timesteps).flip(0).double().cpu()
    if len(ascending) < 2:
        raise UserError("the t2v-zero backend needs at least 2 steps (frame 1 is denoised to T′ before the others)")
    t1 = max(1, int((ascending - PAPER_T).abs().argmin()))
    return max(0, t1 - MOTION_STEPS), t1


def translate_latents(latents: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Frame i of `latents` (F, C, h, w) moved by `shifts[i]` = (dx, dy) pixels of a 512×512 flow grid.

    The reference's warp: the flow lives on a 512×512 coordinate grid, which is resampled (bilinear)
    to the latent size, and the latent is read at those coordinates (nearest, reflected at the border).
    A positive dx reads from the right, so content moves left (towards −x) in the frame.
    """
    frames, _, h, w = latents.shape
    ys, xs = torch.meshgrid(torch.arange(FLOW_GRID, device=latents.device),
                            torch.arange(FLOW_GRID, device=latents.device), indexing="ij")
    base = torch.stack([xs, ys]).to(latents.dtype)  # (2, 512, 512): x then y
    out = torch.empty_like(latents)
    for i in range(frames):
        coords = base + shifts[i].to(latents.dtype).view(2, 1, 1)
        coords = (coords / FLOW_GRID * 2.0 - 1.0)[None]
        grid = F.interpolate(coords, size=(h, w), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        out[i] = F.grid_sample(latents[i:i + 1], grid, mode="nearest", padding_mode="reflection",
                               align_corners=False)[0]
    return out


# ------------------------------------------------------------------------------------- chunks

@dataclass(frozen=True)
class Chunk:
    """One chunk of a long clip: `frame_ids` are global frame indices (frame 0 first in every chunk)."""

    frame_ids: tuple[int, ...]
    start: int  # global index of the chunk's first new frame
    overlap: int  # leading frames that repeat earlier output (frame 1, and in the last chunk more): dropped

    def as_window(self) -> dict:
        """{"start": first new frame, "frames": frames denoised, "overlap": leading frames dropped}."""
        return {"start": self.start, "frames": len(self.frame_ids), "overlap": self.overlap}


def plan_chunks(num_frames: int, window_frames: int) -> list[Chunk]:
    """One chunk if the clip fits a window; else the first `window_frames` frames, then chunks of frame 1
    plus window_frames − 1 new frames. Like the last AnimateDiff window, the last chunk is moved back to
    end on the last frame, so every chunk has the same length (the same batch: frame 1 comes out bit for
    bit the same in every chunk); the frames it repeats are dropped with frame 1 (its `overlap`)."""
    if num_frames <= window_frames:
        return [Chunk(tuple(range(num_frames)), 0, 0)]
    if window_frames < 2:
        raise UserError(f"window_frames must be at least 2 to generate {num_frames} frames in chunks "
                        f"(got {window_frames})")
    new = window_frames - 1
    chunks = [Chunk(tuple(range(window_frames)), 0, 0)]
    for start in range(window_frames, num_frames, new):
        first = min(start, num_frames - new)  # the last chunk ends on the last frame
        chunks.append(Chunk((0, *range(first, first + new)), start, 1 + start - first))
    return chunks


# ------------------------------------------------------------------------------------- pipeline

@dataclass
class _ZeroRun(Run):
    """What every chunk of one call shares: the common run plus the cross-frame processor and T, T′."""

    processor: CrossFrameAttnProcessor | None = None
    t0: int | None = None  # step indices of T′ and T (text only)
    t1: int | None = None


class StructureGuidedZeroPipeline(VideoPipelineBase):
    """Text2Video-Zero on the image UNet (UNet2DConditionModel): latent motion dynamics and cross-frame
    attention, or the depth ControlNet with the τ clamp; long clips in chunks that share frame 1.

    Text only, unset frames are 8 and the size is the UNet's sample size × the VAE factor. Settings
    used: `steps`, `cfg`, `seed`, `window_frames` (chunk length), `decode_chunk_size`; text only:
    `motion_field`, `motion_strength`, `t0`/`t1`; with depth: `tau`, `structure_scale`. Every chunk
    starts from the generator's state at the call. Callbacks run after every step that denoises all
    of a chunk's frames: with depth every step; text only the steps from T on (schedule indices
    N−1−t1 … N−1; the earlier steps denoise frame 1 alone); `step` is the schedule index plus
    chunk × steps.
    """

    run_class = _ZeroRun

    def check_inputs(self, prompt, depth, settings: GenerationSettings, output_type: str = "uint8",
                     callback_on_step_end_tensor_inputs=("latents",)) -> GenerationSettings:
        if hasattr(self.unet, "motion_modules") or hasattr(self.unet.config, "motion_max_seq_length"):
            raise UserError("the t2v-zero backend runs on the image UNet alone; load its components with "
                            "create_components(preset, backend='t2v-zero')")
        if depth is not None and self.controlnet is None:
            raise UserError("depth structure needs the depth ControlNet; this pipeline was built without one")
        if depth is None:
            side = self.unet.config.sample_size * self.vae_scale_factor
            settings = GenerationSettings(frames=DEFAULT_FRAMES, height=side, width=side).replace(
                **settings.to_dict())
        settings = super().check_inputs(prompt, depth, settings, output_type, callback_on_step_end_tensor_inputs)
        return settings.replace(backend=BACKEND)

    def generate(self, depth: torch.Tensor | None, run: _ZeroRun, notes: list[str]):
        settings, device = run.settings, self._execution_device
        # 4a. Depth conditioning (optional): which input frame each output frame follows (prepared per chunk)
        depth_index = None
        if depth is not None:
            depth_index = torch.arange(depth.shape[0])
            if depth.shape[0] != settings.frames:
                depth_index = torch.from_numpy(spread_indices(depth.shape[0], settings.frames))
                notes.append(f"depth has {depth.shape[0]} frames, resampled to {settings.frames} to match --frames")

        # 4b. The motion step indices T, T′ (text only) and the cross-frame processor
        if depth is None:
            run.t0, run.t1 = motion_step_indices(run.timesteps, settings.t0, settings.t1)
        run.processor = CrossFrameAttnProcessor()

        # 4c. Plan the chunks; each starts from the generator's state now (same noise: same frame 1)
        chunks = plan_chunks(settings.frames, settings.window_frames)
        start_state = run.generator.get_state()
        frames = np.empty((settings.frames, settings.height, settings.width, 3), np.float32)
        steps = len(run.timesteps)
        steps_per_chunk = steps if depth is not None else steps - 1 - run.t0 + run.t1 + 1
        self._num_callback_steps = len(chunks) * (steps if depth is not None else run.t1 + 1)

        # 4d. Denoise chunk by chunk with cross-frame attention; decode each chunk when it is done
        with cross_frame_attention((self.unet, self.controlnet), run.processor), \
                self.progress_bar(total=len(chunks) * steps_per_chunk) as progress_bar:
            for c, chunk in enumerate(chunks):
                run.generator.set_state(start_state)
                run.step_offset = c * steps
                run.frame_ids = chunk.frame_ids  # frame 1 first (a step on frame 1 alone uses its first id)
                if depth is None:
                    latents = self._text_chunk(chunk, run, progress_bar)
                else:
                    # This chunk's depth only (memory flat in clip length), as prepare_depth makes it.
                    chunk_depth = self.prepare_depth(depth[depth_index[list(chunk.frame_ids)].to(depth.device)],
                                                     settings.replace(frames=len(chunk.frame_ids)), [])
                    latents = self._depth_chunk(chunk, chunk_depth.to(device, self.controlnet.dtype), run,
                                                progress_bar)
                    del chunk_depth
                self._decode_chunk(latents, chunk, frames, settings.decode_chunk_size)
                del latents
        # t0/t1 as resolved on the text path
        recorded = {"t0": run.t0, "t1": run.t1} if depth is None else {}
        return frames, [chunk.as_window() for chunk in chunks], recorded

    def _decode_chunk(self, latents: torch.Tensor, chunk: Chunk, frames: np.ndarray, decode_chunk_size: int) -> None:
        """Decode a chunk's (frames, C, h, w) latents into its new frames of `frames` (drops the prepended frame 1)."""
        video = self.decode_latents(latents.transpose(0, 1)[None], decode_chunk_size)
        decoded = (video / 2 + 0.5).clamp(0, 1)[0, :, chunk.overlap:].permute(1, 2, 3, 0).cpu().float().numpy()
        frames[chunk.start:chunk.start + len(decoded)] = decoded

    def _initial_noise(self, run: _ZeroRun) -> torch.Tensor:
        """(1, C, h, w) noise for frame 1, drawn on the CPU (as diffusers draws it for the same generator)."""
        from diffusers.utils.torch_utils import randn_tensor

        s = run.settings
        shape = (1, self.unet.config.in_channels, s.height // self.vae_scale_factor, s.width // self.vae_scale_factor)
        noise = randn_tensor(shape, generator=run.generator, dtype=self.unet.dtype)
        return noise.to(self._execution_device) * self.scheduler.init_noise_sigma

    def _text_chunk(self, chunk: Chunk, run: _ZeroRun, progress_bar) -> torch.Tensor:
        """Latent motion dynamics for one chunk: (frames, C, h, w) latents at t = 0."""
        steps = len(run.timesteps)
        begin_t, begin_t_prime = steps - 1 - run.t1, steps - 1 - run.t0  # schedule positions of T and T′

        # Frame 1 alone: from the first step down to T, then on to T′ (keeping its latent at T).
        scheduler = self.fresh_scheduler(run)
        latent = self._initial_noise(run)
        first_at_t = latent if begin_t == 0 else None
        for i in range(begin_t_prime):
            latent = self._denoise_step(scheduler, run, i, latent, progress_bar)
            if i + 1 == begin_t:
                first_at_t = latent
        first_at_t_prime = latent

        # The other frames: frame 1 at T′ translated by λ·(k−1)·δ, then DDPM-forwarded from T′ to T.
        s = run.settings
        others = torch.tensor(chunk.frame_ids[1:], dtype=torch.float64)
        field = torch.tensor([s.motion_strength * s.motion_field[0], s.motion_strength * s.motion_field[1]],
                             dtype=torch.float64)
        moved = translate_latents(first_at_t_prime.expand(len(others), -1, -1, -1), others[:, None] * field)
        moved = self._forward_noise(moved, int(run.timesteps[begin_t_prime]), int(run.timesteps[begin_t]), run)

        # Every frame from T to 0, with cross-frame attention.
        scheduler = self.fresh_scheduler(run, begin_t)
        latents = torch.cat([first_at_t, moved])
        for i in range(begin_t, steps):
            latents = self._denoise_step(scheduler, run, i, latents, progress_bar, callback=True)
        return latents

    def _forward_noise(self, latents: torch.Tensor, t_from: int, t_to: int, run: _ZeroRun) -> torch.Tensor:
        """DDPM forward from timestep `t_from` to `t_to` > t_from in one draw (noise from the generator).

        The retained signal is ∏ α over training timesteps t_from … t_to − 1, as the reference computes it.
        """
        from diffusers.utils.torch_utils import randn_tensor

        eps = randn_tensor(latents.shape, generator=run.generator, dtype=latents.dtype).to(latents.device)
        kept = torch.prod(self.scheduler.alphas[t_from:t_to]).to(latents.device)
        return kept.sqrt() * latents + (1 - kept).sqrt() * eps

    def _depth_chunk(self, chunk: Chunk, depth: torch.Tensor, run: _ZeroRun, progress_bar) -> torch.Tensor:
        """Depth-guided chunk: one shared initial noise for every frame, the clamped ControlNet, all steps."""
        latents = self._initial_noise(run).expand(len(chunk.frame_ids), -1, -1, -1).clone()
        control = torch.cat([depth] * 2) if run.do_cfg else depth
        scheduler = self.fresh_scheduler(run)
        for i in range(len(run.timesteps)):
            latents = self._denoise_step(scheduler, run, i, latents, progress_bar, callback=True, control=control)
        return latents

    def _denoise_step(self, scheduler, run: _ZeroRun, i: int, latents: torch.Tensor, progress_bar, *,
                      callback: bool = False, control: torch.Tensor | None = None) -> torch.Tensor:
        """One step of schedule position `i` on (frames, C, h, w) latents (image-UNet batch layout)."""
        t = run.timesteps[i]
        frames = latents.shape[0]
        run.processor.frames = frames
        embeddings = run.embeddings(i, t, frames)
        model_input = torch.cat([latents] * 2) if run.do_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise_pred = self.predict_noise(model_input, t, embeddings, run, i, control)
        latents = scheduler.step(noise_pred, t, latents, **run.step_kwargs).prev_sample
        if callback:  # the callback sees (1, C, frames, h, w), as AnimateDiff's
            latents = run.after_step(self, i, t, latents.transpose(0, 1)[None])[0].transpose(0, 1)
        progress_bar.update()
        return latents
