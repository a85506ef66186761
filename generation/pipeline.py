"""Structure-guided text-to-video sampling with a clamped depth ControlNet (Animate-A-Story).

`StructureGuidedSampler` is written the way diffusers writes a pipeline — components passed in,
`__call__` in numbered steps — and reproduces diffusers' `AnimateDiffControlNetPipeline` exactly,
with two differences that matter:

* Timestep clamping (τ) *skips* the ControlNet after the cut-off. Step i of N uses depth iff
  (i + 1) / N ≤ τ (diffusers' `control_guidance_end` rule), so τ = 1 keeps every step and τ = 0
  none; diffusers runs the ControlNet anyway and multiplies its output by zero.
* Clips longer than one motion window are generated in overlapping windows with VidRD's reuse
  (Reuse and Diffuse): frame-level noise reversion, past-dependent noise sampling (r = 4) and staged
  guidance of the overlap frames (M = 4, β = 0.4), so memory stays flat in the clip length.

Text conditioning is a per-step hook (`TextConditioning`): the default encodes the prompt once;
a timestep-dependent token (TimeInv) can return different embeddings at every step.

    sampler = StructureGuidedSampler.from_components(create_components("tiny"))
    result = sampler("a teddy bear walking", depth, num_frames=16, tau=0.5, generator=torch.Generator().manual_seed(0))
    result.frames  # (F, H, W, 3) uint8
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from storyreel.depth.conditioning import to_conditioning
from storyreel.core.errors import UserError
from storyreel.core.video import spread_indices

# VidRD settings (REFERENCE.md): overlap M, past-dependence r, staged-guidance length β.
WINDOW_FRAMES = 16  # AnimateDiff's motion modules are trained on 16-frame clips
OVERLAP_FRAMES = 4
NOISE_DEPENDENCE = 4.0
STAGED_GUIDANCE_BETA = 0.4


def structure_steps(num_steps: int, tau: float) -> list[bool]:
    """Which of `num_steps` denoising steps use the depth branch: step i iff (i + 1) / N ≤ τ.

    Written exactly as diffusers' `control_guidance_end` test so the two agree on every float.
    """
    return [not ((i + 1) / num_steps > tau) for i in range(num_steps)]


class TextConditioning(Protocol):
    """Per-step text embeddings: `(step_index, timestep) -> (2, tokens, dim)`, rows [negative, positive]."""

    def __call__(self, step_index: int, timestep: int) -> torch.Tensor: ...


@dataclass
class GenerationResult:
    frames: np.ndarray  # (F, H, W, 3): uint8, or float32 in [0, 1] with output_type="float"
    settings: dict  # every setting needed to regenerate these frames
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. resampled depth)
    structure_forward_passes: int = 0  # ControlNet forward passes actually run
    windows: list[dict] = field(default_factory=list)  # [{"start", "frames", "overlap"}] per window


class StaticTextConditioning:
    """The plain prompt: encoded once, the same embeddings at every step."""

    def __init__(self, embeddings: torch.Tensor):
        self.embeddings = embeddings

    def __call__(self, step_index: int, timestep: int) -> torch.Tensor:
        return self.embeddings


class StructureGuidedSampler:
    """Depth-guided AnimateDiff sampler with timestep clamping and windowed long clips."""

    def __init__(self, unet, controlnet, vae, text_encoder, tokenizer, scheduler, *, ids: dict | None = None,
                 device: str | torch.device | None = None, cpu_offload: bool = False):
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.text_encoder, self.tokenizer, self.scheduler = text_encoder, tokenizer, scheduler
        self.ids = dict(ids or {})
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # With offload the models live on the CPU and visit the device only while they run:
        # peak device memory is one model plus activations instead of all four.
        self.cpu_offload = cpu_offload and self.device.type != "cpu"
        if not self.cpu_offload:
            for module in self._models():
                module.to(self.device)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_components(cls, components, **kwargs) -> "StructureGuidedSampler":
        return cls(components.unet, components.controlnet, components.vae, components.text_encoder,
                   components.tokenizer, components.scheduler, ids=components.ids, **kwargs)

    def _models(self):
        return (self.unet, self.controlnet, self.vae, self.text_encoder)

    @contextlib.contextmanager
    def _on_device(self, *modules):
        if self.cpu_offload:
            for module in modules:
                module.to(self.device)
        try:
            yield
        finally:
            if self.cpu_offload:
                for module in modules:
                    module.to("cpu")
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------ text

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> torch.Tensor:
        """(2, tokens, dim) CLIP hidden states, rows [negative, positive] (as diffusers encodes them)."""
        tokens = self.tokenizer([negative_prompt, prompt], padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length, return_tensors="pt")
        with self._on_device(self.text_encoder):
            embeddings = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return embeddings.to(self.unet.dtype)

    # ----------------------------------------------------------------------------------------- call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        depth: torch.Tensor,
        *,
        negative_prompt: str = "",
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        structure_scale: float = 1.0,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        text_conditioning: TextConditioning | None = None,
        window_frames: int = WINDOW_FRAMES,
        overlap_frames: int = OVERLAP_FRAMES,
        decode_chunk_size: int = 4,
        output_type: str = "uint8",
        on_step: Callable[[int, int], None] | None = None,
    ) -> GenerationResult:
        """Generate frames whose layout follows `depth` for the first τ of the schedule.

        depth: (F, 3, H, W) (or (F, 1, H, W)) in [0, 1], near = bright, as `depth/` produces it.
        generator: a CPU `torch.Generator` (noise is drawn on the CPU so results match across devices).
        on_step(step_done, steps_total) reports progress.
        """
        # 1. Check inputs (unset sizes follow the depth clip)
        if not torch.is_tensor(depth) or depth.ndim != 4 or depth.shape[1] not in (1, 3) or depth.shape[0] < 1:
            shape = tuple(depth.shape) if hasattr(depth, "shape") else type(depth).__name__
            raise UserError(f"depth conditioning has shape {shape}; expected (frames, 3, height, width) in [0, 1]")
        num_frames = depth.shape[0] if num_frames is None else num_frames
        height, width = depth.shape[-2] if height is None else height, depth.shape[-1] if width is None else width
        self.check_inputs(prompt, num_frames, height, width, num_inference_steps, tau, output_type,
                          window_frames, overlap_frames)
        notes: list[str] = []

        # 2. Prepare the depth conditioning: (F, 3, H, W) on the device, matching frames and size
        depth = self._prepare_depth(depth, num_frames, height, width, notes)

        # 3. Text conditioning (a per-step hook; the default encodes the prompt once)
        do_cfg = guidance_scale > 1.0
        text_conditioning = text_conditioning or StaticTextConditioning(self.encode_prompt(prompt, negative_prompt))

        # 4. Timesteps and the clamp: which steps run the depth branch
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        use_structure = structure_steps(len(timesteps), tau)

        # 5. Plan windows and draw the initial noise (VidRD reuse across windows)
        windows = plan_windows(num_frames, window_frames, overlap_frames)
        latent_shape = (1, self.unet.config.in_channels, num_frames,
                        height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = initial_noise(latent_shape, windows, generator, dtype=self.unet.dtype)
        latents = torch.empty_like(noise, device=self.device)

        # 6. Denoise window by window; each window hands its overlap trajectory to the next
        structure_passes, previous_trajectory = 0, None
        total_steps = len(windows) * len(timesteps)
        with self._on_device(self.unet, self.controlnet):
            for w, window in enumerate(windows):
                window_latents, previous_trajectory, passes = self._denoise_window(
                    noise[:, :, window.start:window.end].to(self.device) * self.scheduler.init_noise_sigma,
                    depth[window.start:window.end], window, windows[w + 1] if w + 1 < len(windows) else None,
                    previous_trajectory, timesteps, use_structure, text_conditioning, do_cfg, guidance_scale,
                    structure_scale, generator,
                    on_step=(lambda i: on_step(w * len(timesteps) + i + 1, total_steps)) if on_step else None,
                )
                structure_passes += passes
                # Overlap frames keep the previous window's result; this window adds the frames after it.
                latents[:, :, window.start + window.overlap:window.end] = window_latents[:, :, window.overlap:]

        # 7. Decode in frame chunks (bounded VAE memory) and post-process
        with self._on_device(self.vae):
            video = self.decode_latents(latents, decode_chunk_size)
        frames = (video / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu().float().numpy()
        if output_type == "uint8":
            frames = (frames * 255).round().astype(np.uint8)

        settings = {
            "prompt": prompt, "negative_prompt": negative_prompt, "num_frames": num_frames, "height": height,
            "width": width, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
            "structure_scale": structure_scale, "tau": tau, "structure_steps": sum(use_structure),
            "window_frames": window_frames, "overlap_frames": overlap_frames, "decode_chunk_size": decode_chunk_size,
            "scheduler": type(self.scheduler).__name__, "dtype": str(self.unet.dtype).replace("torch.", ""),
            "components": self.ids,
        }
        return GenerationResult(frames=frames, settings=settings, notes=notes,
                                structure_forward_passes=structure_passes,
                                windows=[{"start": w.start, "frames": w.end - w.start, "overlap": w.overlap}
                                         for w in windows])

    # ---------------------------------------------------------------------------------------- steps

    def check_inputs(self, prompt, num_frames, height, width, steps, tau, output_type="uint8",
                     window_frames=WINDOW_FRAMES, overlap_frames=OVERLAP_FRAMES):
        """One-line UserErrors for settings the sampler cannot run with (callers check before slow work)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("prompt is empty; give --prompt a description of the clip")
        if not num_frames or num_frames < 1:
            raise UserError(f"frames must be a positive number (got {num_frames})")
        multiple = self.vae_scale_factor
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise UserError(f"height and width must be positive multiples of {multiple} (got {height}x{width})")
        if steps < 1:
            raise UserError(f"steps must be at least 1 (got {steps})")
        if not 0.0 <= tau <= 1.0:
            raise UserError(f"tau is a fraction of the schedule between 0 and 1 (got {tau})")
        if output_type not in ("uint8", "float"):
            raise ValueError(f"output_type must be 'uint8' or 'float', not {output_type!r}")
        if not 0 <= overlap_frames < window_frames:
            raise ValueError(f"overlap_frames ({overlap_frames}) must be below window_frames ({window_frames})")

    def _prepare_depth(self, depth, num_frames: int, height: int, width: int, notes: list[str]) -> torch.Tensor:
        depth = depth.float()
        if depth.shape[1] == 1:
            depth = depth.expand(-1, 3, -1, -1)
        if depth.shape[0] != num_frames:
            # Nearest-frame resampling in time keeps every depth map a real one (no blends of two).
            index = torch.from_numpy(spread_indices(depth.shape[0], num_frames))
            notes.append(f"depth has {depth.shape[0]} frames, resampled to {num_frames} to match --frames")
            depth = depth[index.to(depth.device)]
        if tuple(depth.shape[-2:]) != (height, width):
            # depth/'s rule (cover + centre crop keeps the aspect ratio), applied to every channel as a frame.
            frames, channels = depth.shape[:2]
            depth = to_conditioning(depth.flatten(0, 1).cpu(), (height, width), frames * channels)[:, 0]
            depth = depth.unflatten(0, (frames, channels))
        return depth.clamp(0, 1).to(self.device, self.controlnet.dtype)

    def _denoise_window(self, latents, depth, window, next_window, previous_trajectory, timesteps, use_structure,
                        text_conditioning, do_cfg, guidance_scale, structure_scale, generator, on_step):
        """Run the whole schedule on one window; returns (latents, overlap trajectory for the next, passes)."""
        # Multistep schedulers keep a history of model outputs: each window gets a fresh one.
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(len(timesteps), device=self.device)
        step_kwargs = _scheduler_step_kwargs(scheduler, generator)
        frames = latents.shape[2]
        control_image = torch.cat([depth] * 2) if do_cfg else depth
        handoff = next_window.start - window.start if next_window else None
        trajectory, passes = [], 0
        embeddings_source, embeddings = None, None
        for i, t in enumerate(timesteps):
            # Staged guidance: overlap frame f follows the previous window while i < (M - f)·(N/M)·β.
            if previous_trajectory is not None:
                for f in range(window.overlap):
                    if i < (window.overlap - f) * (len(timesteps) / window.overlap) * STAGED_GUIDANCE_BETA:
                        latents[:, :, f] = previous_trajectory[i][:, :, f]
            if handoff is not None:
                trajectory.append(latents[:, :, handoff:].clone())

            step_embeddings = text_conditioning(i, int(t))
            if step_embeddings is not embeddings_source:  # expand per frame only when the hook changes them
                embeddings_source = step_embeddings
                embeddings = (step_embeddings if do_cfg else step_embeddings[1:]).repeat_interleave(frames, dim=0)

            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            residuals = {}
            if use_structure[i]:  # the clamp: after τ the ControlNet does not run at all
                down, mid = self.controlnet(
                    model_input.transpose(1, 2).flatten(0, 1), t, encoder_hidden_states=embeddings,
                    controlnet_cond=control_image, conditioning_scale=structure_scale, return_dict=False,
                )
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
                passes += 1
            noise_pred = self.unet(model_input, t, encoder_hidden_states=embeddings, **residuals).sample
            if do_cfg:
                noise_uncond, noise_text = noise_pred.chunk(2)
                noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if on_step:
                on_step(i)
        return latents, trajectory or None, passes

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """(1, C, F, h, w) latents → (1, 3, F, H, W) images in [-1, 1], `chunk_size` frames at a time."""
        latents = latents / self.vae.config.scaling_factor
        flat = latents[0].transpose(0, 1)  # (F, C, h, w)
        images = [self.vae.decode(flat[i:i + chunk_size].to(self.vae.dtype)).sample.float()
                  for i in range(0, flat.shape[0], chunk_size)]
        return torch.cat(images).transpose(0, 1)[None]


# ---------------------------------------------------------------------------------- long clips (VidRD)

@dataclass(frozen=True)
class Window:
    start: int
    end: int
    overlap: int  # leading frames shared with the previous window (0 for the first)


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int) -> list[Window]:
    """Cover `num_frames` with windows of `window_frames` that overlap by `overlap_frames`.

    The last window is moved back to end on the last frame, so it may overlap more.
    """
    if num_frames <= window_frames:
        return [Window(0, num_frames, 0)]
    stride = window_frames - overlap_frames
    starts = list(range(0, num_frames - window_frames, stride)) + [num_frames - window_frames]
    return [Window(s, s + window_frames, 0 if k == 0 else starts[k - 1] + window_frames - s)
            for k, s in enumerate(starts)]


def initial_noise(shape, windows: list[Window], generator, dtype) -> torch.Tensor:
    """Initial latents for the whole clip, drawn on the CPU.

    The first window's noise is exactly what diffusers draws for the same shape and generator. Each
    later window (VidRD): its overlap frames are the frames already drawn (they are the same output
    frames, which is what frame-level noise reversion hands over); its new frames take the noise of
    the previous window's frame at the same position, blended with fresh noise as
    (r·previous + ε) / √(1 + r²), r = 4 (past-dependent sampling; the division keeps unit variance).
    Same position, not reversed order: reversed, the first new frame would share 97% of its noise with
    the last overlap frame right before it and repeat it (a visible stutter at every seam).
    """
    from diffusers.utils.torch_utils import randn_tensor

    first = windows[0]
    noise = torch.empty(shape, dtype=dtype)
    noise[:, :, :first.end] = randn_tensor((*shape[:2], first.end, *shape[3:]), generator=generator, dtype=dtype)
    r = NOISE_DEPENDENCE
    for previous, window in zip(windows, windows[1:]):
        new = window.end - (window.start + window.overlap)
        same_position = noise[:, :, previous.start + window.overlap:previous.start + window.overlap + new]
        fresh = randn_tensor((*shape[:2], new, *shape[3:]), generator=generator, dtype=dtype)
        noise[:, :, window.start + window.overlap:window.end] = (r * same_position + fresh) / math.sqrt(1 + r * r)
    return noise


def _scheduler_step_kwargs(scheduler, generator) -> dict:
    """eta/generator only for schedulers that take them (as diffusers' pipelines do)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
