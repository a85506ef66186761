"""The model registry: every component of every preset, as data, in one table.

A preset (`tiny`, `default`) names a CLIP (index, search, eval), a depth model and a generator (base
model, motion adapter, ControlNet, scheduler, sampling defaults). Each package builds its part from
here: `storyreel.index.embed.load_clip`, `storyreel.depth.create_depth_model(preset.depth)`,
`storyreel.generation.components.create_components`. `storyreel models` lists the table.

    preset = get_preset("default")            # or get_preset() for --models / $STORYREEL_MODELS
    preset.generator.steps                    # 25
    # Swapping one component is one `dataclasses.replace`; loaders take the result wherever they
    # take a preset name:
    other = replace(preset, depth="dpt_large_384")
    other = replace(preset, clip=ClipSpec("hf-hub:timm/ViT-B-16-SigLIP"))
    other = replace(preset, generator=replace(preset.generator, base="some-org/some-sd15-fine-tune"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from storyreel.core.errors import UserError

ENV_VAR = "STORYREEL_MODELS"
HF_HUB = "hf-hub:"
# open_clip checkpoint file names in a Hugging Face repo, in open_clip's own order of preference.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipSpec:
    """An open_clip model: an architecture with a pretrained tag, an `hf-hub:` id, or a config built in code.

    Weights are read from the Hugging Face cache (`weights_repo`); with none (no tag, no hf-hub id)
    the model is built at random init with `seed`. Preprocessing and the tokenizer come from open_clip.
    """

    architecture: str                 # open_clip model name ("ViT-B-32"), "hf-hub:org/repo", or a label for `config`
    pretrained: str | None = None     # open_clip pretrained tag, its weights read from `hf_repo`
    hf_repo: str | None = None        # HF repo holding the tag's open_clip checkpoint
    config: dict | None = None        # explicit open_clip CLIP(**config) instead of a named architecture
    seed: int = 0                     # random init (before any weights load)

    def __post_init__(self):
        if self.pretrained and not self.hf_repo:
            raise ValueError(f"CLIP {self.architecture}:{self.pretrained} needs the hf_repo its weights are in")

    @property
    def model_id(self) -> str:
        """Stored in every index: queries must embed with the same model."""
        if self.architecture.startswith(HF_HUB):
            return f"open_clip:{self.architecture}"
        return f"open_clip:{self.architecture}:{self.pretrained or f'seed{self.seed}'}"

    @property
    def weights_repo(self) -> str | None:
        """Where the weights are looked for in the HF cache; None: random init (built in code)."""
        if self.architecture.startswith(HF_HUB):
            return self.architecture[len(HF_HUB):]
        return self.hf_repo if self.pretrained else None


@dataclass(frozen=True)
class SchedulerSpec:
    """A diffusers scheduler class, loaded from the base model's `scheduler/` folder with `config` overrides."""

    name: str
    config: dict = field(default_factory=dict)


# AnimateDiff samples with DDIM on the linear beta schedule (the SD1.5 folder ships PNDM settings).
ANIMATEDIFF_DDIM = SchedulerSpec("DDIMScheduler", {"beta_schedule": "linear", "clip_sample": False,
                                                   "timestep_spacing": "linspace", "steps_offset": 1})


@dataclass(frozen=True)
class GeneratorSpec:
    """The video diffusion model and the sampling defaults that suit it."""

    base: str             # SD1.5-layout repo: unet, vae, text_encoder, tokenizer, scheduler
    motion_adapter: str   # AnimateDiff MotionAdapter repo
    controlnet: str       # depth ControlNet repo
    height: int
    width: int
    frames: int
    steps: int
    cfg: float
    train_size: int       # square resolution of character training (`character train --size`)
    seed: int | None = None  # set: random-init models built in code (the ids are labels); None: HF cache
    scheduler: SchedulerSpec = ANIMATEDIFF_DDIM


@dataclass(frozen=True)
class ModelPreset:
    name: str
    clip: ClipSpec
    depth: str            # a model of storyreel.depth.registry.MODELS
    generator: GeneratorSpec


TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

PRESETS: dict[str, ModelPreset] = {
    # Small random-init models with fixed seeds: tests, the demo and smoke runs need no weights.
    "tiny": ModelPreset(
        name="tiny",
        clip=ClipSpec("tiny", config=TINY_CLIP_CONFIG, seed=0),
        depth="tiny",
        # The ids are labels of models generation/tiny.py builds, not Hugging Face repos.
        generator=GeneratorSpec(
            "storyreel/tiny-sd15(seed=0)", "storyreel/tiny-motion-adapter(seed=0)",
            "storyreel/tiny-controlnet-depth(seed=0)", height=64, width=64, frames=16, steps=4, cfg=7.5,
            train_size=64, seed=0,
        ),
    ),
    "default": ModelPreset(
        name="default",
        clip=ClipSpec("ViT-B-32", pretrained="laion2b_s34b_b79k", hf_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        depth="dpt_hybrid_384",
        generator=GeneratorSpec(
            base="stable-diffusion-v1-5/stable-diffusion-v1-5",
            motion_adapter="guoyww/animatediff-motion-adapter-v1-5-3",
            controlnet="lllyasviel/control_v11f1p_sd15_depth",
            height=512, width=512, frames=16, steps=25, cfg=7.5, train_size=256,
        ),
    ),
}


def get_preset(preset: str | ModelPreset | None = None) -> ModelPreset:
    """`--models` value, else $STORYREEL_MODELS, else "default". A ModelPreset passes through, so every
    loader that takes a preset name also takes a preset with swapped components."""
    if isinstance(preset, ModelPreset):
        return preset
    name = preset or os.environ.get(ENV_VAR) or "default"
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r} (--models / ${ENV_VAR}); choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_preset(name: str | None = None) -> str:
    """The preset name a command uses (what manifests and sidecars record)."""
    return get_preset(name).name


# -- swapping components: `--clip`, `--depth-model`, `--base`, ... and a story file's `models:` section --------

# The overridable components: parsed-argument name of its flag (cli/common.py: --clip, --depth-model,
# --base, --motion-adapter, --controlnet, --scheduler) -> the keyword of `with_overrides`.
COMPONENT_ARGS = {"clip_model": "clip", "depth_model": "depth", "base": "base", "motion_adapter": "motion_adapter",
                  "controlnet": "controlnet", "scheduler": "scheduler"}
BUILT_IN = "storyreel/tiny-"  # ids of the generator models generation/tiny.py builds in code


def is_built_in(model_id: str) -> bool:
    """A tiny generator component made in code (not a repo, folder or file)."""
    return model_id.startswith(BUILT_IN)


def parse_clip(text: str) -> ClipSpec:
    """`--clip` value -> ClipSpec: `hf-hub:ORG/REPO`, or open_clip `NAME:PRETRAINED_TAG` (HF repo from open_clip)."""
    text = text.strip()
    if text.startswith(HF_HUB):
        if text.count("/") != 1:
            raise UserError(f"--clip {text!r}: expected hf-hub:ORG/REPO")
        return ClipSpec(text)
    architecture, _, tag = text.partition(":")
    if not tag:
        raise UserError(f"--clip {text!r}: expected an open_clip NAME:PRETRAINED_TAG (e.g. "
                        "ViT-B-32:laion2b_s34b_b79k) or hf-hub:ORG/REPO; open_clip.list_pretrained() lists the tags")
    import open_clip

    hf_repo = (open_clip.get_pretrained_cfg(architecture, tag) or {}).get("hf_hub", "").strip("/")
    if not hf_repo:
        raise UserError(f"--clip {text!r}: open_clip has no pretrained tag {tag!r} with Hugging Face weights for "
                        f"{architecture!r}; see open_clip.list_pretrained()")
    return ClipSpec(architecture, pretrained=tag, hf_repo=hf_repo)


def with_overrides(preset: str | ModelPreset | None = None, *, clip: str | ClipSpec | None = None,
                   depth: str | None = None, base: str | None = None, motion_adapter: str | None = None,
                   controlnet: str | None = None, scheduler: str | None = None) -> ModelPreset:
    """`preset` with the given components swapped (None: keep the preset's); each swap is one `replace`.

    base/motion_adapter/controlnet: a repo id in the HF cache, a local diffusers folder (base also a
    single .safetensors/.ckpt file); depth: a registry name or a transformers depth model (repo id or
    folder); scheduler: a diffusers scheduler class name, with the preset's scheduler settings.
    """
    preset = get_preset(preset)
    if clip is not None:
        preset = replace(preset, clip=parse_clip(clip) if isinstance(clip, str) else clip)
    if depth is not None:
        preset = replace(preset, depth=_local_or_repo(depth, "--depth-model"))
    generator = preset.generator
    for role, value in (("base", base), ("motion_adapter", motion_adapter), ("controlnet", controlnet)):
        if value is not None:
            generator = replace(generator, **{role: _local_or_repo(value, "--" + role.replace("_", "-"))})
    if scheduler is not None:
        generator = replace(generator, scheduler=replace(generator.scheduler, name=_scheduler_class(scheduler)))
    return replace(preset, generator=generator)


def preset_from_args(args, **fallbacks) -> ModelPreset:
    """The preset of a parsed command: --models, then whichever of --clip, --depth-model, --base,
    --motion-adapter, --controlnet, --scheduler it has and was given (`fallbacks`: values for the ones
    not given, e.g. a story file's `models:` section)."""
    given = {key: getattr(args, dest, None) for dest, key in COMPONENT_ARGS.items()}
    given = {key: value if value is not None else fallbacks.get(key) for key, value in given.items()}
    return with_overrides(getattr(args, "models", None), **given)


def _local_or_repo(value: str, flag: str) -> str:
    """A model reference as given: an existing path (made absolute, so records say where) or a repo id."""
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    looks_like_file = value.startswith((".", "/", "~")) or value.endswith((".safetensors", ".ckpt"))
    if value.count("/") == 1 and not looks_like_file:
        return value  # ORG/NAME: looked up in the Hugging Face cache when loaded
    if "/" not in value and flag == "--depth-model":
        return value  # a depth registry name; storyreel.depth.registry checks it
    raise UserError(f"{flag} {value}: no such file or folder (give a local path or a Hugging Face repo id ORG/NAME)")


def _scheduler_class(name: str) -> str:
    import diffusers

    if not name.endswith("Scheduler") or not hasattr(diffusers, name):
        known = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and not n.startswith("Flax"))
        raise UserError(f"--scheduler {name!r} is not a diffusers scheduler; e.g. {', '.join(known[:8])}, ...")
    return name


# -- what an index records ------------------------------------------------------------------------------


def preset_for_model_id(model_id: str) -> ModelPreset | None:
    """The preset whose CLIP an index was built with (its recorded model id), if any."""
    return next((p for p in PRESETS.values() if p.clip.model_id == model_id), None)


def clip_for_model_id(model_id: str) -> ClipSpec:
    """The CLIP an index recorded (`open_clip:NAME:TAG`, `open_clip:hf-hub:ORG/REPO`, or a preset's)."""
    preset = preset_for_model_id(model_id)
    if preset is not None:
        return preset.clip
    prefix = "open_clip:"
    rest = model_id[len(prefix):] if model_id.startswith(prefix) else None
    if not rest or rest.split(":")[-1].startswith("seed"):
        raise UserError(f"the index's CLIP model {model_id!r} is not one storyreel can rebuild; "
                        "pass --clip or --models")
    return parse_clip(rest)
