"""Clips from a prompt and a structure source: the Python front door behind `storyreel generate` and `render`.

    summary = generate_clip(ClipRequest("a teddy bear walks in a park", "walk.mp4"), "clip.mp4",
                            GenerationSettings.for_preset("tiny", tau=0.5), preset="tiny")

    generator = ClipGenerator("tiny", characters=["teddy.safetensors"])   # load the models once ...
    clip = generator.generate(ClipRequest("<teddy> walks in a park", "walk.mp4"), "clip.mp4")  # ... many clips

The structure source is a video or a clip id (depth estimated by `storyreel.depth`), or a depth video written
by `storyreel depth` (recognized by its `<file>.json` sidecar with "kind": "depth", or forced with
`structure_kind="depth"`), which is used as it is. `depth.conditioning_for_source` does all of that.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from storyreel.core.errors import UserError
from storyreel.core.files import sidecar_path
from storyreel.core.models import get_preset
from storyreel.core.writers import check_writable, write_video
from storyreel.generation.characters import CharacterConditioning, load_characters
from storyreel.generation.characters.pack import load_pack, pack_summary
from storyreel.generation.components import create_components
from storyreel.generation.layout import Layout
from storyreel.generation.pipeline import Steering
from storyreel.generation.settings import GenerationSettings, check_lora_scale, pipeline_class


@dataclass(frozen=True)
class ClipRequest:
    """One clip to generate: its text, where its structure comes from, and what else steers it."""

    prompt: str
    structure: object = None  # a video file, a clip id or a depth video; None: from the prompt alone (t2v-zero)
    negative_prompt: str = ""
    structure_kind: str = "auto"  # "depth": `structure` is a depth video, used as it is
    index_dir: object = None  # the index a clip id is looked up in
    present: tuple[str, ...] | None = None  # tokens of the characters in the clip (None: every loaded one)
    layout: Layout | None = None  # entity boxes steering attention (generation/layout.py)


@dataclass
class GeneratedClip:
    """What one generation wrote, plus what a storyboard needs from it."""

    sidecar: dict  # the content of `<out>.json`: every setting, the seed, the component ids, notes
    frames: np.ndarray  # uint8 (F, H, W, 3), as written
    depth: torch.Tensor | None  # (F, 3, H, W) in [0, 1]: the structure the frames followed (None: none)
    timings: dict = field(default_factory=dict)  # seconds of the depth, generate and write stages


class ClipGenerator:
    """The models clips need, loaded once: a pipeline per backend (each with the character packs) and
    the depth model.

    `backend` is loaded now (so missing weights fail before any work); another backend a clip asks
    for is loaded on first use. `characters`: pack files; each adds its token and a LoRA adapter at
    `lora_scale`. A clip can name the characters present in it: the others' LoRA is silenced for it.
    """

    def __init__(self, preset, *, device=None, dtype: torch.dtype | None = None,
                 cpu_offload: bool = False, characters=(), lora_scale: float = 1.0, backend: str = "animatediff"):
        from storyreel.core.devices import pick_device, pick_dtype

        # `preset`: a name or a ModelPreset with swapped components (storyreel.core.models.with_overrides)
        self.preset, self.lora_scale, self.cpu_offload = preset, lora_scale, cpu_offload
        self.device = pick_device(device) if device is None or isinstance(device, str) else device
        # fp16 on a GPU is what makes 16 frames at 512x512 fit in 12 GB; the CPU has no fast fp16.
        self.dtype = dtype or pick_dtype(None, self.device)
        self.characters = [str(p) for p in characters]
        self._pipes, self._depth_model = {}, None
        self.pipeline(backend)

    def pipeline(self, backend: str):
        """(pipeline, character tokens or None) of a backend (GenerationSettings.backend), loaded once."""
        if backend not in self._pipes:
            components = create_components(self.preset, dtype=self.dtype, backend=backend)
            pipe = pipeline_class(backend).from_components(components)
            pipe.set_progress_bar_config(disable=True)  # library code reports only through callbacks
            if self.cpu_offload and self.device.type != "cpu":
                pipe.enable_model_cpu_offload(device=self.device)  # one model on the GPU at a time
            else:
                pipe.to(self.device)
            tokens = load_characters(pipe, self.characters, self.lora_scale) if self.characters else None
            self._pipes[backend] = (pipe, tokens)
        return self._pipes[backend]

    @property
    def packs(self) -> dict[str, str]:
        """Token -> pack file of every loaded character."""
        _, tokens = next(iter(self._pipes.values()))
        return dict(zip(tokens.tokens, self.characters)) if tokens else {}

    def depth_model(self):
        """The preset's depth model, loaded on first use (a depth-video source never needs it)."""
        from storyreel import depth

        if self._depth_model is None:
            self._depth_model = depth.create_depth_model(depth.model_for_preset(self.preset), device=self.device)
        return self._depth_model

    def resolve_settings(self, settings: GenerationSettings | None = None) -> GenerationSettings:
        """`settings` with unset frames and size taken from the preset (None: the preset's settings)."""
        preset_settings = GenerationSettings.for_preset(self.preset)
        if settings is None:
            return preset_settings
        return settings.replace(**{k: getattr(preset_settings, k) for k in ("frames", "height", "width")
                                   if getattr(settings, k) is None})

    def generate(self, request: ClipRequest, out, settings: GenerationSettings | None = None, *,
                 on_stage: Callable[[str], None] | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> GeneratedClip:
        """Generate one clip into `out` (.mp4/.gif/PNG folder) plus `<out>.json`.

        `settings`: None is the preset's; unset frames and size are the preset's. `on_stage(name)`
        reports "depth", "generate", "write"; `on_step(done, total)` each denoising step (through the
        pipeline's callback_on_step_end; diffusers' own bar stays off).
        """
        check_writable(out)  # before minutes of sampling
        settings = self.resolve_settings(settings)
        settings.check()
        pipe, tokens = self.pipeline(settings.backend)
        settings = pipe.check_inputs(request.prompt, None, settings)  # before depth estimation
        stage, timings = on_stage or (lambda name: None), {}

        stage("depth")
        start = time.perf_counter()
        depth, structure_info, notes = None, {"kind": "none"}, []  # t2v-zero from the prompt alone
        if request.structure is not None:
            from storyreel.depth import Playback

            depth, structure_info, notes = load_structure(
                request.structure, preset=self.preset, frames=settings.frames, size=(settings.height, settings.width),
                index_dir=request.index_dir, kind=request.structure_kind, model=self.depth_model,  # loaded if needed
                playback=Playback(settings.fps, settings.speed))
        timings["depth_s"] = round(time.perf_counter() - start, 3)

        stage("generate")
        start = time.perf_counter()
        packs = self.packs
        present = list(packs) if request.present is None else list(request.present)
        text_conditioning = None
        if tokens is not None:
            if tokens.adapters:  # `--mode ti` packs have no LoRA adapter
                pipe.set_adapters(list(tokens.adapters.values()),
                                  [self.lora_scale if token in present else 0.0 for token in tokens.adapters])
            text_conditioning = CharacterConditioning(tokens, request.prompt, request.negative_prompt, pipe.unet)
        result = pipe(request.prompt, depth, settings, negative_prompt=request.negative_prompt,
                      steering=Steering(text=text_conditioning, layout=request.layout),
                      callback_on_step_end=_step_counter(on_step))
        timings["generate_s"] = round(time.perf_counter() - start, 3)

        stage("write")
        start = time.perf_counter()
        metadata = {"kind": "generated", "preset": get_preset(self.preset).name, **result.settings,
                    "structure": _jsonable(structure_info),
                    "characters": [{"token": token, "pack": packs[token], **pack_summary(packs[token])}
                                   for token in present],
                    "lora_scale": self.lora_scale, "structure_forward_passes": result.structure_forward_passes,
                    "windows": result.windows, "notes": notes + result.notes}
        write_video(result.frames, out, fps=settings.fps, metadata=metadata)
        timings["write_s"] = round(time.perf_counter() - start, 3)
        return GeneratedClip(json.loads(sidecar_path(out).read_text()), result.frames, depth, timings)


def generate_clip(request: ClipRequest, out, settings: GenerationSettings | None = None, *,
                  on_step: Callable[[int, int], None] | None = None, **generator_options) -> dict:
    """Load a `ClipGenerator(**generator_options)` (preset, device, dtype, cpu_offload, characters,
    lora_scale; preset "default" unless given) and generate one clip into `out` (.mp4/.gif/PNG folder)
    plus `<out>.json`; returns that sidecar's content. `on_step(done, total)`: after each denoising step.
    """
    from storyreel.depth.media import index_context, open_source

    generator_options.setdefault("preset", "default")
    settings = settings or GenerationSettings.for_preset(generator_options["preset"])
    settings.check()  # everything below fails before any model loads, too
    check_lora_scale(generator_options.get("lora_scale", 1.0))
    check_writable(out)
    for pack in generator_options.get("characters", ()):  # a damaged pack fails now, not after the models load
        load_pack(pack)
    if request.structure is None and settings.backend != "t2v-zero":
        raise UserError(f"--structure is required for the {settings.backend} backend "
                        "(only t2v-zero can generate from the prompt alone)")
    if request.structure is not None:
        with index_context(request.index_dir) as index:
            open_source(request.structure, index)  # a missing or unreadable structure source fails now
    generator = ClipGenerator(**generator_options, backend=settings.backend)
    return generator.generate(request, out, settings, on_step=on_step).sidecar


def load_structure(source, *, preset, frames: int, size: tuple[int, int], index_dir=None,
                   kind: str = "auto", model=None, playback=None) -> tuple[torch.Tensor, dict, list[str]]:
    """(depth (F, 3, H, W) in [0, 1], info, notes) for a structure source (see depth.conditioning_for_source).

    `model`: a DepthModel or a function returning one; None: the preset's. Either way it is loaded only
    if the source needs depth estimation. `playback` (a depth.Playback): the source is read in a window
    played at its speed (1: real time) at the output's fps; None spreads the frames over the whole source.
    """
    from storyreel import depth

    conditioning, info = depth.conditioning_for_source(
        source, model=model or depth.model_for_preset(preset), size=size, num_frames=frames, index_dir=index_dir,
        source_kind=kind, playback=playback)
    notes = [info.pop("cache_note")] if "cache_note" in info else []
    if info["frame_sampling"] == "repeated":
        notes.append(f"structure {info['source']} has {info['source_frames']} frames, resampled to {frames}")
    return conditioning, info, notes


def _step_counter(on_step: Callable[[int, int], None] | None) -> Callable | None:
    """A callback_on_step_end that reports `on_step(done, total)` after each denoising step (None: none)."""
    if on_step is None:
        return None
    done = 0

    def count(pipe, step: int, timestep, tensors: dict) -> dict:
        nonlocal done
        done += 1
        on_step(done, pipe.num_callback_steps)
        return tensors

    return count


def _jsonable(info: dict) -> dict:
    return json.loads(json.dumps(info, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
