"""`GenerationSettings`: every knob of one generated clip, in one place.

The same object flows from a story file's `defaults:` block, a plot's overrides and the `generate`
flags through `ClipGenerator` into `StructureGuidedPipeline.__call__`, and back out into the clip's
JSON sidecar, so no signature re-declares these fields.

    settings = GenerationSettings.for_preset("default", tau=0.3)   # the preset's size/steps/cfg, one override
    settings.frames, settings.steps   # 16, 25
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from dataclasses import dataclass

from storyreel.core.errors import UserError

# The fields a preset decides (its generator's size, length, steps and guidance), so a story or a
# CLI flag that leaves them unset gets what suits the model instead of one fixed table.
PRESET_FIELDS = ("frames", "height", "width", "steps", "cfg")
# The generation backends: name -> (module, class) of its pipeline, imported on first use (this module
# is read at every `storyreel` start, before torch). animatediff: AnimateDiff motion modules + depth
# ControlNet; t2v-zero: Text2Video-Zero on the image UNet alone + depth ControlNet.
BACKENDS = {
    "animatediff": ("storyreel.generation.pipeline", "StructureGuidedPipeline"),
    "t2v-zero": ("storyreel.generation.zero", "StructureGuidedZeroPipeline"),
}
# How the animatediff backend makes clips longer than one window (generation/pipeline.py):
# overlap: overlapping windows, the new frames' noise mirrored about the overlap with a weak past
# dependence, staged guidance anchoring the seam frame longest (the default: best measured,
# scripts/bench_long.py); vidrd: Reuse and Diffuse as its official code does it (mirrored clips).
# freenoise: FreeNoise's noise rescheduling (local shuffles of the first window's noise) with every
# window run at every step and their noise predictions fused (a candidate, see docs/generation.md).
LONG_MODES = ("overlap", "vidrd", "freenoise")


def pipeline_class(backend: str):
    """The pipeline class of a backend of BACKENDS."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    module, name = BACKENDS[backend]
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class GenerationSettings:
    frames: int | None = None  # None: as many frames as the structure source has
    height: int | None = None  # None: the structure's height (a multiple of the VAE factor, 8)
    width: int | None = None
    steps: int = 25  # denoising steps
    cfg: float = 7.5  # classifier-free guidance scale (1 turns guidance off)
    tau: float = 0.5  # fraction of the schedule that follows the structure (Animate-A-Story's clamp)
    structure_scale: float = 1.0  # strength of the depth ControlNet's residuals
    seed: int = 0
    fps: float = 8.0
    # Playback speed of the structure source's motion: 1 reads it in real time at `fps` (a window of
    # frames/fps seconds centred in the source), 2 twice as fast. A source shorter than that window is
    # spread over its whole length; the sidecar's structure info records the speed played.
    speed: float = 1.0
    # VidRD long clips: AnimateDiff's motion modules are trained on 16-frame windows; M = 4 overlap.
    window_frames: int = 16
    overlap_frames: int = 4
    long: str = "overlap"  # one of LONG_MODES: how clips longer than window_frames are made
    decode_chunk_size: int = 4  # VAE frames per decode call (bounds decode memory)
    backend: str = "animatediff"  # one of BACKENDS
    # Text2Video-Zero: frame k's latent is frame 1's moved by motion_strength·(k−1)·motion_field, in
    # pixels of a 512×512 frame as the paper's code counts them (content moves by −δ, like a pan);
    # t0 < t1 are the step indices of the paper's T′ and T (None: T the step nearest t = 941 and T′
    # three steps later, i.e. 44 and 47 of 50 steps; generation/zero.py motion_step_indices).
    motion_field: tuple[float, float] = (1.0, 1.0)
    motion_strength: float = 12.0
    t0: int | None = None
    t1: int | None = None
    recipe: str = "fast"  # the recipe (core/recipes/) whose values these settings started from

    @classmethod
    def for_preset(cls, preset, recipe: str | None = None, **overrides) -> GenerationSettings:
        """The preset's frames, size, steps and cfg, then the recipe's values (core/recipes.py; None: fast),
        then `overrides` (None values mean "not given").

        `preset`: a preset name or a `storyreel.core.models.ModelPreset`.
        """
        from storyreel.core.models import get_preset
        from storyreel.core.recipes import get_recipe

        generator = get_preset(preset).generator
        chosen = get_recipe(recipe)
        return (cls().replace(**{name: getattr(generator, name) for name in PRESET_FIELDS})
                .replace(recipe=chosen.name, **chosen.generation).replace(**overrides))

    def replace(self, **changes) -> GenerationSettings:
        """A copy with `changes` applied; None values are ignored (an unset flag or story field)."""
        unknown = set(changes) - set(field_names())
        if unknown:
            raise TypeError(f"unknown generation settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def __post_init__(self):
        # A list from JSON (a sidecar, a manifest) and a tuple from code are the same setting.
        object.__setattr__(self, "motion_field", tuple(self.motion_field))

    def to_dict(self) -> dict:
        """JSON-ready: what sidecars and manifests store, and what `GenerationSettings(**d)` reads back."""
        return {**dataclasses.asdict(self), "motion_field": list(self.motion_field)}

    def check(self, vae_scale_factor: int = 8, memory_bytes: int | None = None) -> None:
        """One-line UserErrors for values no generation can run with (callers check before slow work).

        Every number must be finite and inside `LIMITS`; frames × size must fit in `memory_bytes`
        (default: this machine's RAM, see `memory_estimate`).
        """
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        from storyreel.core.recipes import get_recipe

        get_recipe(self.recipe)  # an unknown name: one line listing the recipes
        if self.long not in LONG_MODES:
            raise UserError(f"unknown long-clip mode {self.long!r}; choose one of {', '.join(LONG_MODES)}")
        if any(isinstance(side, int) and (side <= 0 or side % vae_scale_factor) for side in (self.height, self.width)):
            raise UserError(f"height and width must be positive multiples of {vae_scale_factor} "
                            f"(got {self.height}x{self.width})")
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None:
                problem = setting_problem(name, value)
                if problem:
                    raise UserError(f"{name} {problem}")
        if len(self.motion_field) != 2 or not all(_finite_number(v) and abs(v) <= 100 for v in self.motion_field):
            raise UserError(f"motion_field must be two finite numbers DX,DY within ±100 (got {self.motion_field})")
        t0, t1 = self.t0, self.t1
        if (t0 is None) != (t1 is None) or (t0 is not None and not 0 <= t0 < t1 < self.steps):
            raise UserError(f"t0 and t1 are step indices with 0 <= t0 < t1 < steps ({self.steps}); "
                            f"give both or neither (got t0={t0}, t1={t1})")
        if not 0 <= self.overlap_frames < self.window_frames:
            raise UserError(f"overlap_frames ({self.overlap_frames}) must be at least 0 and below "
                            f"window_frames ({self.window_frames})")
        if None not in (self.frames, self.height, self.width):
            check_memory(self.frames, self.height, self.width, memory_bytes)


# Allowed range of every number (inclusive). Beyond these no generation is sensible, and the libraries
# below fail late with a traceback (e.g. a seed above 2**64, more steps than the scheduler's 1000
# training timesteps), so values are refused before any model loads.
LIMITS: dict[str, tuple[float, float]] = {
    "frames": (1, 4096),
    "height": (8, 4096),
    "width": (8, 4096),
    "steps": (1, 1000),
    "cfg": (1.0, 100.0),
    "tau": (0.0, 1.0),
    "structure_scale": (0.0, 100.0),
    "seed": (0, 2**32 - 1),
    "fps": (0.1, 1000.0),
    "speed": (0.01, 100.0),
    "window_frames": (2, 4096),
    "overlap_frames": (0, 4095),
    "decode_chunk_size": (1, 4096),
    "motion_strength": (0.0, 1000.0),
    "t0": (0, 999),
    "t1": (1, 999),
}
INTEGER_SETTINGS = ("frames", "height", "width", "steps", "seed", "window_frames", "overlap_frames",
                    "decode_chunk_size", "t0", "t1")
# What one frame pixel costs at least while generating, in bytes: the float32 depth conditioning
# (3 channels) and the float32 decoded frames (3 channels) are held for every frame at once, plus the
# uint8 output. A lower bound, so a refusal is certain; sizes that pass may still need far more.
BYTES_PER_PIXEL = 32
_MESSAGES = {  # the wording tests and users already know, for the common mistakes
    "frames": "must be a positive number", "tau": "is a fraction of the schedule between 0 and 1",
    "steps": "must be at least 1", "cfg": "must be at least 1 (1 turns guidance off)",
}


def setting_problem(name: str, value) -> str | None:
    """What is wrong with `value` for setting `name` ("must be ... (got ...)"), or None if it is fine."""
    lowest, highest = LIMITS[name]
    integer = name in INTEGER_SETTINGS
    if isinstance(value, bool) or not (isinstance(value, int) if integer else _finite_number(value)):
        kind = "an integer" if integer else "a finite number"
        return f"must be {kind} from {_show(lowest)} to {_show(highest)} (got {str(value)[:40]})"
    if not lowest <= value <= highest:
        if name in _MESSAGES and (value < lowest or name == "tau"):  # tau's words fit both sides
            return f"{_MESSAGES[name]} (got {_show(value)})"
        return f"must be from {_show(lowest)} to {_show(highest)} (got {_show(value)})"
    return None


def _show(value) -> str:
    """`value` for a message: ints in full (a huge one cannot become a float), floats short."""
    text = str(value) if isinstance(value, int) else f"{value:g}"
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _finite_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)  # an int is finite (and may be too big for a float)


def check_lora_scale(lora_scale) -> None:
    """The characters' LoRA strength: 0 (table only) to 10 (far past "as trained"), finite."""
    if isinstance(lora_scale, bool) or not (isinstance(lora_scale, (int, float)) and math.isfinite(lora_scale)
                                            and 0 <= lora_scale <= 10):
        raise UserError(f"--lora-scale must be a finite number from 0 to 10 (got {lora_scale})")


def memory_estimate(frames: int, height: int, width: int) -> int:
    """Bytes a clip of this many frames at this size needs at least (`BYTES_PER_PIXEL` per pixel)."""
    return int(frames) * int(height) * int(width) * BYTES_PER_PIXEL


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(frames: int, height: int, width: int, memory_bytes: int | None = None) -> None:
    """A one-line UserError if frames × height × width cannot fit in `memory_bytes` (default: the RAM)."""
    memory_bytes = memory_bytes or machine_memory()
    need = memory_estimate(frames, height, width)
    if memory_bytes and need > memory_bytes:
        raise UserError(f"{frames} frames of {width}x{height} need at least {need / 2**30:.1f} GiB of memory "
                        f"({BYTES_PER_PIXEL} bytes per pixel), more than the {memory_bytes / 2**30:.1f} GiB here; "
                        "lower frames, height or width")


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(GenerationSettings))
