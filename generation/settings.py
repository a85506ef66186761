"""`GenerationSettings`: every knob of one generated clip, in one place.

The same object flows from a story file's `defaults:` block, a plot's overrides and the `generate`
flags through `ClipGenerator` into `StructureGuidedPipeline.__call__`, and back out into the clip's
JSON sidecar, so no signature re-declares these fields.

    settings = GenerationSettings.for_preset("default", tau=0.3)   # the preset's size/steps/cfg, one override
    settings.frames, settings.steps   # 16, 25
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from storyreel.core.errors import UserError

# The fields a preset decides (its generator's size, length, steps and guidance), so a story or a
# CLI flag that leaves them unset gets what suits the model instead of one fixed table.
PRESET_FIELDS = ("frames", "height", "width", "steps", "cfg")
# animatediff: AnimateDiff motion modules + depth ControlNet (generation/pipeline.py);
# t2v-zero: Text2Video-Zero on the image UNet alone + depth ControlNet (generation/zero.py).
BACKENDS = ("animatediff", "t2v-zero")
# How the animatediff backend makes clips longer than one window (generation/pipeline.py):
# overlap: overlapping windows, the new frames' noise mirrored about the overlap with a weak past
# dependence, staged guidance anchoring the seam frame longest (the default: best measured,
# scripts/bench_long.py); vidrd: Reuse and Diffuse as its official code does it (mirrored clips).
# freenoise: FreeNoise's noise rescheduling (local shuffles of the first window's noise) with every
# window run at every step and their noise predictions fused (a candidate, see the README).
LONG_MODES = ("overlap", "vidrd", "freenoise")


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
    # VidRD long clips: AnimateDiff's motion modules are trained on 16-frame windows; M = 4 overlap.
    window_frames: int = 16
    overlap_frames: int = 4
    long: str = "overlap"  # one of LONG_MODES: how clips longer than window_frames are made
    decode_chunk_size: int = 4  # VAE frames per decode call (bounds decode memory)
    backend: str = "animatediff"  # one of BACKENDS
    # Text2Video-Zero: frame k's latent is frame 1's moved by motion_strength·(k−1)·motion_field, in
    # pixels of a 512×512 frame as the paper's code counts them (content moves by −δ, like a pan);
    # t0 < t1 are the step indices of the paper's T′ and T (None: the steps whose timesteps are
    # nearest T′ = 881 and T = 941, i.e. 44 and 47 of 50 steps).
    motion_field: tuple[float, float] = (1.0, 1.0)
    motion_strength: float = 12.0
    t0: int | None = None
    t1: int | None = None

    @classmethod
    def for_preset(cls, preset, **overrides) -> GenerationSettings:
        """The preset's frames, size, steps and cfg, then `overrides` (None values mean "not given").

        `preset`: a preset name or a `storyreel.core.models.ModelPreset`.
        """
        from storyreel.core.models import get_preset

        generator = get_preset(preset).generator
        return cls().replace(**{name: getattr(generator, name) for name in PRESET_FIELDS}).replace(**overrides)

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

    def check(self, vae_scale_factor: int = 8) -> None:
        """One-line UserErrors for values no generation can run with (callers check before slow work)."""
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.long not in LONG_MODES:
            raise UserError(f"unknown long-clip mode {self.long!r}; choose one of {', '.join(LONG_MODES)}")
        if not math.isfinite(self.motion_strength) or self.motion_strength < 0:
            raise UserError(f"motion_strength must be a finite number >= 0 (got {self.motion_strength})")
        if len(self.motion_field) != 2 or not all(math.isfinite(v) for v in self.motion_field):
            raise UserError(f"motion_field must be two finite numbers DX,DY (got {self.motion_field})")
        t0, t1 = self.t0, self.t1
        if (t0 is None) != (t1 is None) or (t0 is not None and not 0 <= t0 < t1 < self.steps):
            raise UserError(f"t0 and t1 are step indices with 0 <= t0 < t1 < steps ({self.steps}); "
                            f"give both or neither (got t0={t0}, t1={t1})")
        if self.frames is not None and self.frames < 1:
            raise UserError(f"frames must be a positive number (got {self.frames})")
        if any(side is not None and (side <= 0 or side % vae_scale_factor) for side in (self.height, self.width)):
            raise UserError(f"height and width must be positive multiples of {vae_scale_factor} "
                            f"(got {self.height}x{self.width})")
        if self.steps < 1:
            raise UserError(f"steps must be at least 1 (got {self.steps})")
        if self.cfg < 1:
            raise UserError(f"cfg must be at least 1 (1 turns guidance off; got {self.cfg})")
        if not 0.0 <= self.tau <= 1.0:
            raise UserError(f"tau is a fraction of the schedule between 0 and 1 (got {self.tau})")
        if self.fps <= 0:
            raise UserError(f"fps must be above 0 (got {self.fps})")
        if self.decode_chunk_size < 1:
            raise UserError(f"decode_chunk_size must be at least 1 (got {self.decode_chunk_size})")
        if not 0 <= self.overlap_frames < self.window_frames:
            raise UserError(f"overlap_frames ({self.overlap_frames}) must be at least 0 and below "
                            f"window_frames ({self.window_frames})")


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(GenerationSettings))
