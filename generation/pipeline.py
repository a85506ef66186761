"""`StructureGuidedPipeline`: depth-guided AnimateDiff with a clamped ControlNet (Animate-A-Story).

A diffusers `DiffusionPipeline` (components registered, `save_pretrained` / `from_pretrained`,
`enable_model_cpu_offload`, `callback_on_step_end`, LoRA adapters through `set_adapters`) whose
frames equal diffusers' `AnimateDiffControlNetPipeline`, with two differences that matter:

* Timestep clamping (τ) *skips* the ControlNet after the cut-off. A step uses depth iff its timestep
  t ≥ (1 − τ)·T (`structure_applies`, the rule character training uses too), so τ = 1 keeps every step
  and τ = 0 none; on evenly spaced schedules these are the steps diffusers' `control_guidance_end = τ`
  keeps, but diffusers runs the ControlNet anyway and multiplies its output by zero.
* Clips longer than one motion window are generated window by window (`settings.long`: overlap,
  vidrd or freenoise, planned in generation/long_clips.py), so memory stays flat in the clip length.

Text conditioning is a per-step hook (`TextConditioning`): the default encodes the prompt once;
a timestep-dependent token (TimeInv, generation/characters/) returns different embeddings per step.

    pipe = StructureGuidedPipeline.from_components(create_components("tiny"))
    out = pipe("a teddy bear walking", depth, GenerationSettings(frames=16, tau=0.5, seed=0))
    out.frames  # (F, H, W, 3) uint8
"""

from __future__ import annotations

import contextlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils import BaseOutput

from storyreel.core.errors import UserError
from storyreel.core.video import spread_indices
from storyreel.depth.conditioning import to_conditioning
from storyreel.generation.layout import Layout, token_positions
from storyreel.generation.layout_attention import LayoutControl, layout_attention
from storyreel.generation.long_clips import WindowPlan, clip_noise, long_clip_noise, long_clip_plan
from storyreel.generation.settings import GenerationSettings


def structure_applies(timestep, tau: float, num_train_timesteps: int) -> bool:
    """The τ clamp, one rule for generation and character training (training/train.py): the depth branch
    guides the noisiest τ fraction of the schedule, every timestep t ≥ (1 − τ)·T. Stated in timesteps, not
    step fractions, so a pack trained at τ meets depth at the timesteps generation at τ gives it, whatever
    the step count or spacing."""
    return float(timestep) >= round((1.0 - tau) * num_train_timesteps, 6)  # round: τ 0.2 of 1,000 is t ≥ 800


def structure_steps(timesteps, tau: float, num_train_timesteps: int) -> list[bool]:
    """Which denoising steps (by their timesteps) use the depth branch: `structure_applies` of each."""
    return [structure_applies(t, tau, num_train_timesteps) for t in timesteps]


class TextConditioning(Protocol):
    """Per-step text embeddings: `(step_index, timestep) -> (2, tokens, dim)`, rows [negative, positive]."""

    def __call__(self, step_index: int, timestep: int) -> torch.Tensor: ...


@dataclass
class StructureGuidedPipelineOutput(BaseOutput):
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


@dataclass(frozen=True)
class Steering:
    """What steers a call besides its prompt, depth clip and settings (both optional)."""

    text: TextConditioning | None = None  # per-step embeddings (TimeInv characters); None: the prompt encoded once
    layout: Layout | None = None  # entity boxes steering attention for the first `layout.strength` of the steps


@dataclass
class Run:
    """One call's checked inputs, shared by every window or chunk a backend denoises."""

    timesteps: torch.Tensor
    use_structure: list[bool]
    text_conditioning: TextConditioning
    settings: GenerationSettings
    generator: torch.Generator
    callback: Callable | None
    callback_inputs: tuple[str, ...]
    step_offset: int = 0  # global index of this window's first step (callbacks count across windows)
    structure_passes: int = 0  # ControlNet forward passes actually run
    step_kwargs: dict = field(default_factory=dict)  # eta/generator for scheduler.step, as it accepts them
    layout: LayoutControl | None = None  # entity boxes steering attention (generation/layout.py)
    frame_ids: tuple[int, ...] | None = None  # clip frames of the window or chunk being denoised (None: all)
    _expanded: tuple | None = field(default=None, repr=False)  # (hook output, frames, per-frame embeddings)

    @property
    def do_cfg(self) -> bool:
        return self.settings.cfg > 1.0

    def embeddings(self, step: int, timestep, frames: int) -> torch.Tensor:
        """The text hook's embeddings for a step, one row per frame (per CFG half); expanded again only
        when the hook's output or the frame count changes (TimeInv changes it per bucket)."""
        source = self.text_conditioning(step, int(timestep))
        if self._expanded is None or self._expanded[0] is not source or self._expanded[1] != frames:
            rows = source if self.do_cfg else source[1:]
            self._expanded = (source, frames, rows.repeat_interleave(frames, dim=0))
        return self._expanded[2]

    def after_step(self, pipe, step: int, timestep, latents: torch.Tensor) -> torch.Tensor:
        """callback_on_step_end for schedule position `step` (counted on across windows); returns the
        latents it hands back, else `latents` (1, C, frames, h, w)."""
        if self.callback is None:
            return latents
        tensors = {"latents": latents}  # what _callback_tensor_inputs offers
        outputs = self.callback(pipe, self.step_offset + step, timestep, {k: tensors[k] for k in self.callback_inputs})
        return (outputs or {}).get("latents", latents)


@dataclass
class _WindowState:
    """One window's latents and depth, and the trajectory it hands to / takes from its neighbours."""

    plan: WindowPlan
    latents: torch.Tensor  # (1, C, frames, h, w)
    depth: torch.Tensor  # (frames, 3, H, W)
    handoff: list[int]  # positions the next window's staged guidance reads (empty: last window)
    previous_trajectory: list[dict[int, torch.Tensor]] | None  # per step: the previous window's handoff latents


class VideoPipelineBase(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """What every storyreel video backend shares: its six components and their ids, prompt encoding,
    input checks, depth preparation, the guided noise prediction, chunked VAE decoding and `__call__`.
    Backends implement `generate` (noise, denoising loop, decoding)."""

    model_cpu_offload_seq = "text_encoder->unet->vae"  # the ControlNet runs inside the loop: its own hook
    _callback_tensor_inputs = ["latents"]
    run_class = Run  # a backend may extend what its denoising loop carries

    def __init__(self, unet, controlnet, vae, text_encoder, tokenizer, scheduler, component_ids: str = "{}"):
        super().__init__()
        self.register_modules(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, scheduler=scheduler)
        # Where each piece came from (a JSON string: pipeline configs hold plain values); character
        # packs check it, outputs record it, and save_pretrained keeps it in model_index.json.
        self.register_to_config(component_ids=component_ids)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._num_callback_steps = 0  # set by the backend's `generate` for each call

    @classmethod
    def from_components(cls, components):
        """A pipeline over `generation.components.Components` (models loaded by `create_components`)."""
        return cls(components.unet, components.controlnet, components.vae, components.text_encoder,
                   components.tokenizer, components.scheduler, component_ids=json.dumps(components.ids, sort_keys=True))

    @property
    def ids(self) -> dict[str, str]:
        return json.loads(self.config.component_ids)

    # ------------------------------------------------------------------------------------------ text

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> torch.Tensor:
        """(2, tokens, dim) CLIP hidden states, rows [negative, positive] (as diffusers encodes them)."""
        tokens = self.tokenizer([negative_prompt, prompt], padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length, return_tensors="pt")
        embeddings = self.text_encoder(tokens.input_ids.to(self._execution_device))[0]
        return embeddings.to(self.unet.dtype)

    # ----------------------------------------------------------------------------------------- call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        depth: torch.Tensor | None = None,
        settings: GenerationSettings | None = None,
        *,
        negative_prompt: str = "",
        steering: Steering | None = None,
        output_type: str = "uint8",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ) -> StructureGuidedPipelineOutput:
        """Generate a clip whose layout follows `depth` for the first τ of the schedule.

        depth: (F, 3, H, W) (or (F, 1, H, W)) in [0, 1], near = bright, as `storyreel.depth` produces it
        (the t2v-zero backend also runs without one). settings: unset frames/height/width follow the
        depth clip; noise is drawn on the CPU from `settings.seed`, so results match across devices and
        the recorded seed regenerates them. steering: a per-step text hook and/or a layout (`Steering`).
        callback_on_step_end(pipe, step, timestep, {"latents": ...}) runs after denoising steps (steps
        count on across windows/chunks, `pipe.num_callback_steps` in all; each backend says which) and
        may return replacement latents, as in diffusers.
        """
        # 1. Check inputs (unset sizes follow the depth clip)
        settings = self.check_inputs(prompt, depth, settings or GenerationSettings(), output_type,
                                     callback_on_step_end_tensor_inputs)
        steering = steering or Steering()
        generator = torch.Generator().manual_seed(settings.seed)
        notes: list[str] = []

        # 2. Text conditioning (a per-step hook; the default encodes the prompt once)
        text_conditioning = steering.text or StaticTextConditioning(self.encode_prompt(prompt, negative_prompt))

        # 3. Timesteps and the clamp: which steps run the depth branch (none without a depth clip)
        self.scheduler.set_timesteps(settings.steps, device=self._execution_device)
        timesteps = self.scheduler.timesteps
        use_structure = structure_steps(timesteps, settings.tau if depth is not None else 0.0,
                                        self.scheduler.config.num_train_timesteps)
        run = self.run_class(timesteps, use_structure, text_conditioning, settings, generator, callback_on_step_end,
                             tuple(callback_on_step_end_tensor_inputs),
                             step_kwargs=_scheduler_step_kwargs(self.scheduler, generator))

        # 4. Layout: the entity boxes' attention control (its processors wrap the UNet's during step 5)
        layout_record = {}
        if steering.layout is not None:
            run.layout, layout_record = self.layout_control(prompt, steering.layout, settings, len(timesteps), notes)

        # 5. The backend: noise, the denoising loop, decoding -> float frames in [0, 1]
        with layout_attention(self.unet, run.layout) if run.layout is not None else contextlib.nullcontext():
            frames, windows, recorded = self.generate(depth, run, notes)
        self.maybe_free_model_hooks()
        if output_type == "uint8":
            frames = (frames * 255).round().astype(np.uint8)

        # 6. Record every setting needed to regenerate these frames
        recorded = {**settings.to_dict(), "structure_steps": sum(use_structure), "prompt": prompt,
                    "negative_prompt": negative_prompt, "scheduler": type(self.scheduler).__name__,
                    "dtype": str(self.unet.dtype).replace("torch.", ""), "components": self.ids, **layout_record,
                    **recorded}
        return StructureGuidedPipelineOutput(frames=frames, settings=recorded, notes=notes,
                                             structure_forward_passes=run.structure_passes, windows=windows)

    @property
    def num_callback_steps(self) -> int:
        """How many times the running (or last) call runs callback_on_step_end, over all its windows or
        chunks: a step callback's progress is its count of calls out of this."""
        return self._num_callback_steps

    def layout_control(self, prompt: str, layout: Layout, settings: GenerationSettings, steps: int,
                       notes: list[str]) -> tuple[LayoutControl, dict]:
        """The call's LayoutControl (entity words found in the prompt) and what the sidecar records."""
        positions = [token_positions(self.tokenizer, prompt, entity.phrase) for entity in layout.entities]
        for entity, found in zip(layout.entities, positions):
            if not found:
                notes.append(f"layout: entity {entity.name!r}: {entity.phrase!r} is not in the prompt; "
                             "its box masks self-attention only")
        latent_size = (settings.height // self.vae_scale_factor, settings.width // self.vae_scale_factor)
        control = LayoutControl(layout, settings.frames, latent_size, positions, steps, settings.cfg > 1.0)
        return control, {"layout": {**layout.to_dict(), "token_positions": positions,
                                    "controlled_steps": sum(control.steps)}}

    def generate(self, depth: torch.Tensor | None, run: Run, notes: list[str]) -> tuple[np.ndarray, list[dict], dict]:
        """The backend's work: (float32 frames (F, H, W, 3) in [0, 1], windows, settings to record)."""
        raise NotImplementedError

    def fresh_scheduler(self, run: Run, begin_index: int = 0):
        """A new scheduler on the run's schedule: multistep schedulers keep a history of model outputs,
        so every window or chunk gets its own. `begin_index`: the schedule position it starts at."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(len(run.timesteps), device=run.timesteps.device)
        if begin_index and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin_index)
        return scheduler

    def predict_noise(self, model_input, t, embeddings, run: Run, step: int, control=None, controlnet_input=None):
        """One step's guided noise prediction: the ControlNet's residuals while the clamp allows (after τ
        it does not run at all), the UNet, then classifier-free guidance. `controlnet_input`: the
        latents as the ControlNet takes them, if its layout differs from the UNet's. With a layout, its
        processors learn the step and frames first, and energy guidance (if any) moves the UNet's input."""
        if run.layout is not None:
            frames = embeddings.shape[0] // (2 if run.do_cfg else 1)
            run.layout.begin(step, run.frame_ids or range(frames))
            if run.layout.active and run.layout.guided[step]:
                model_input = run.layout.guide(self.unet, model_input, t, embeddings)
        residuals = {}
        if control is not None and run.use_structure[step]:
            down, mid = self.controlnet(
                model_input if controlnet_input is None else controlnet_input, t, encoder_hidden_states=embeddings,
                controlnet_cond=control, conditioning_scale=run.settings.structure_scale, return_dict=False)
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            run.structure_passes += 1
        noise_pred = self.unet(model_input, t, encoder_hidden_states=embeddings, **residuals).sample
        if run.do_cfg:
            noise_uncond, noise_text = noise_pred.chunk(2)
            noise_pred = noise_uncond + run.settings.cfg * (noise_text - noise_uncond)
        return noise_pred

    # ---------------------------------------------------------------------------------------- steps

    def check_inputs(self, prompt, depth, settings: GenerationSettings, output_type: str = "uint8",
                     callback_on_step_end_tensor_inputs=("latents",)) -> GenerationSettings:
        """One-line UserErrors for inputs the pipeline cannot run with; returns the settings with the
        frames and size the depth clip implies filled in. `depth` may be None (checked later)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("prompt is empty; give --prompt a description of the clip")
        if depth is not None:
            if not torch.is_tensor(depth) or depth.ndim != 4 or depth.shape[1] not in (1, 3) or depth.shape[0] < 1:
                shape = tuple(depth.shape) if hasattr(depth, "shape") else type(depth).__name__
                raise UserError(f"depth conditioning has shape {shape}; expected (frames, 3, height, width) in [0, 1]")
            frames, height, width = depth.shape[0], depth.shape[-2], depth.shape[-1]
            settings = GenerationSettings(frames=frames, height=height, width=width).replace(**settings.to_dict())
        settings.check(self.vae_scale_factor)
        if output_type not in ("uint8", "float"):
            raise ValueError(f"output_type must be 'uint8' or 'float', not {output_type!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs must be in {self._callback_tensor_inputs}, "
                             f"got {unknown}")
        return settings

    def prepare_depth(self, depth: torch.Tensor, settings: GenerationSettings, notes: list[str]) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1] with the settings' frame count and size (nearest frames, cover-and-crop)."""
        depth = depth.float()
        if depth.shape[1] == 1:
            depth = depth.expand(-1, 3, -1, -1)
        if depth.shape[0] != settings.frames:
            # Nearest-frame resampling in time keeps every depth map a real one (no blends of two).
            index = torch.from_numpy(spread_indices(depth.shape[0], settings.frames))
            notes.append(f"depth has {depth.shape[0]} frames, resampled to {settings.frames} to match --frames")
            depth = depth[index.to(depth.device)]
        if tuple(depth.shape[-2:]) != (settings.height, settings.width):
            # storyreel.depth's rule (cover + centre crop keeps the aspect ratio), every channel as a frame.
            frames, channels = depth.shape[:2]
            depth = to_conditioning(depth.flatten(0, 1).cpu(), (settings.height, settings.width), frames * channels)
            depth = depth[:, 0].unflatten(0, (frames, channels))
        return depth.clamp(0, 1)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """(1, C, F, h, w) latents → (1, 3, F, H, W) images in [-1, 1], `chunk_size` frames at a time."""
        latents = latents / self.vae.config.scaling_factor
        flat = latents[0].transpose(0, 1)  # (F, C, h, w)
        video = None  # written chunk by chunk: one copy of the clip's images, never two
        for i in range(0, flat.shape[0], chunk_size):
            images = self.vae.decode(flat[i:i + chunk_size].to(self.vae.dtype)).sample.float()
            if video is None:
                video = torch.empty((1, images.shape[1], flat.shape[0], *images.shape[2:]), device=images.device)
            video[0, :, i:i + len(images)] = images.transpose(0, 1)
        return video


class StructureGuidedPipeline(VideoPipelineBase):
    """Depth-guided AnimateDiff (a UNetMotionModel) with timestep clamping and windowed long clips.
    Callbacks run after every step of every window."""

    def generate(self, depth: torch.Tensor, run: Run, notes: list[str]) -> tuple[np.ndarray, list[dict], dict]:
        settings, device = run.settings, self._execution_device
        # 4a. Prepare the depth conditioning: (F, 3, H, W) on the device, matching frames and size
        depth = self.prepare_depth(depth, settings, notes).to(device, self.controlnet.dtype)

        # 4b. Plan windows and draw the initial noise (settings.long decides how windows reuse each other)
        plans = long_clip_plan(settings.frames, settings.window_frames, settings.overlap_frames,
                               len(run.timesteps), settings.long)
        latent_shape = (1, self.unet.config.in_channels, settings.frames,
                        settings.height // self.vae_scale_factor, settings.width // self.vae_scale_factor)
        noises = long_clip_noise(latent_shape, plans, settings.long, run.generator, dtype=self.unet.dtype)
        fused = settings.long == "freenoise" and len(plans) > 1
        self._num_callback_steps = len(run.timesteps) * (1 if fused else len(plans))
        if fused:
            # 4c. FreeNoise: every step runs every window on the whole clip's latents and fuses them
            latents = self._denoise_fused(clip_noise(plans, noises).to(device) * self.scheduler.init_noise_sigma,
                                          plans, depth, run)
        else:
            # 4c. Denoise window by window; each window hands the trajectory its successor anchors to
            latents = self._denoise_windows(noises, plans, depth, run, latent_shape)

        # 4d. Decode in frame chunks (bounded VAE memory)
        video = self.decode_latents(latents, settings.decode_chunk_size)
        frames = video.mul_(0.5).add_(0.5).clamp_(0, 1)[0].permute(1, 2, 3, 0).cpu().numpy()  # in place: flat memory
        return frames, [plan.record for plan in plans], {}

    def _denoise_windows(self, noises, plans: list[WindowPlan], depth: torch.Tensor, run: Run, latent_shape):
        """Each window runs the whole schedule in turn and writes its kept frames into the clip."""
        device = self._execution_device
        latents = torch.empty(latent_shape, dtype=self.unet.dtype, device=device)
        previous_trajectory = None
        with self.progress_bar(total=len(plans) * len(run.timesteps)) as progress_bar:
            for w, plan in enumerate(plans):
                handoff = sorted({src for _, src, _ in plans[w + 1].anchors}) if w + 1 < len(plans) else []
                state = _WindowState(plan, noises[w].to(device) * self.scheduler.init_noise_sigma,
                                     depth[list(plan.frame_ids)], handoff, previous_trajectory)
                noises[w] = None  # drawn noise is only needed until its window starts
                run.frame_ids = plan.frame_ids
                run.step_offset = w * len(run.timesteps)
                window_latents, previous_trajectory = self._denoise_window(state, run, progress_bar)
                positions, outputs = zip(*plan.keep)
                latents[:, :, list(outputs)] = window_latents[:, :, list(positions)]
        return latents

    def _denoise_fused(self, latents: torch.Tensor, plans: list[WindowPlan], depth: torch.Tensor, run: Run):
        """FreeNoise's window fusion: at every step each window predicts the noise of its frames and a
        frame's prediction is the average of its windows' weighted by position (1 at a window's edges
        rising to the middle), then one scheduler step moves the whole clip. Callbacks run once a step."""
        scheduler = self.fresh_scheduler(run)
        frames = len(plans[0].frame_ids)
        weights = torch.tensor([min(p + 1, frames - p) for p in range(frames)], dtype=latents.dtype,
                               device=latents.device)
        run.step_offset = 0
        with self.progress_bar(total=len(run.timesteps)) as progress_bar:
            for i, t in enumerate(run.timesteps):
                embeddings = run.embeddings(i, t, frames)
                fused = torch.zeros_like(latents)
                total = torch.zeros(latents.shape[2], dtype=latents.dtype, device=latents.device)
                for plan in plans:
                    ids = list(plan.frame_ids)
                    run.frame_ids = plan.frame_ids
                    window = latents[:, :, ids]
                    model_input = scheduler.scale_model_input(torch.cat([window] * 2) if run.do_cfg else window, t)
                    control = torch.cat([depth[ids]] * 2) if run.do_cfg else depth[ids]
                    noise_pred = self.predict_noise(model_input, t, embeddings, run, i, control,
                                                    controlnet_input=model_input.transpose(1, 2).flatten(0, 1))
                    fused[:, :, ids] += noise_pred * weights[None, None, :, None, None]
                    total[ids] += weights
                fused /= total[None, None, :, None, None]
                latents = run.after_step(self, i, t, scheduler.step(fused, t, latents, **run.step_kwargs).prev_sample)
                progress_bar.update()
        return latents

    def _denoise_window(self, state: _WindowState, run: Run, progress_bar):
        """Run the whole schedule on one window; returns (latents, overlap trajectory for the next)."""
        scheduler = self.fresh_scheduler(run)
        latents = state.latents
        frames = latents.shape[2]
        control_image = torch.cat([state.depth] * 2) if run.do_cfg else state.depth
        trajectory = []
        for i, t in enumerate(run.timesteps):
            # Staged guidance: overlap position f follows the previous window while step i < its anchor length.
            if state.previous_trajectory is not None:
                for position, source, until in state.plan.anchors:
                    if i < until:
                        latents[:, :, position] = state.previous_trajectory[i][source]
            if state.handoff:
                trajectory.append({p: latents[:, :, p].clone() for p in state.handoff})

            embeddings = run.embeddings(i, t, frames)
            model_input = torch.cat([latents] * 2) if run.do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            # The ControlNet is an image model: frames go into the batch dimension.
            noise_pred = self.predict_noise(model_input, t, embeddings, run, i, control_image,
                                            controlnet_input=model_input.transpose(1, 2).flatten(0, 1))
            latents = run.after_step(self, i, t, scheduler.step(noise_pred, t, latents, **run.step_kwargs).prev_sample)
            progress_bar.update()
        return latents, trajectory or None


def _scheduler_step_kwargs(scheduler, generator) -> dict:
    """eta/generator only for schedulers that take them (as diffusers' pipelines do)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs
