"""The model registry: presets (core/presets/*.json and a user's own) and the swappable components.

A preset (`tiny`, `default`, or a user's JSON file: docs/presets.md, core/preset_files.py) names a CLIP
(index, search, eval), a depth model and a generator (base model, motion adapter, ControlNet,
scheduler, sampling defaults). Each package builds its part from here:
`storyreel.index.embed.load_clip`, `storyreel.depth.create_depth_model(preset.depth)`,
`storyreel.generation.components.create_components`. `storyreel models` lists the presets.

    preset = get_preset("default")            # or get_preset() for --models / $STORYREEL_MODELS,
    preset = get_preset("my/preset.json")     # or a preset file
    preset.generator.steps                    # 25
    # Swapping one component is one `dataclasses.replace`; loaders take the result wherever they
    # take a preset name:
    other = replace(preset, depth="dpt_large_384")
    other = replace(preset, clip=ClipSpec("hf-hub:timm/ViT-B-16-SigLIP"))
    other = replace(preset, clip=parse_clip("path/to/open_clip_folder"))   # a local folder in the HF layout
    other = replace(preset, generator=replace(preset.generator, base="some-org/some-sd15-fine-tune"))
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from storyreel.core.errors import UserError

ENV_VAR = "STORYREEL_MODELS"
HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"  # open_clip's prefix for a folder in the Hugging Face layout
OPEN_CLIP_CONFIG = "open_clip_config.json"  # an hf-hub repo's or folder's architecture, preprocessing, tokenizer
# open_clip checkpoint file names in a Hugging Face repo, in open_clip's own order of preference.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipSpec:
    """An open_clip model: an architecture with a pretrained tag, an `hf-hub:` id, a `local-dir:` folder
    (the Hugging Face layout: open_clip_config.json + open_clip_model.safetensors), or a config built in code.

    Weights are read from the Hugging Face cache (`weights_repo`) or the folder; with none (no tag,
    no hf-hub id, no folder) the model is built at random init with `seed`. Preprocessing and the
    tokenizer come from open_clip.
    """

    architecture: str                 # open_clip model name ("ViT-B-32"), "hf-hub:org/repo", "local-dir:/abs/folder",
                                      # or a label for `config`
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
        if self.local_folder is not None:  # where it is and what it holds: a retrained folder is another model
            return f"open_clip:{self.architecture}@{folder_digest(self.local_folder)}"
        return f"open_clip:{self.architecture}:{self.pretrained or f'seed{self.seed}'}"

    @property
    def weights_repo(self) -> str | None:
        """Where the weights are looked for in the HF cache; None: random init (built in code)."""
        if self.architecture.startswith(HF_HUB):
            return self.architecture[len(HF_HUB):]
        return self.hf_repo if self.pretrained else None

    @property
    def local_folder(self) -> Path | None:
        """The folder of a `local-dir:` CLIP (absolute), else None."""
        return Path(self.architecture[len(LOCAL_DIR):]) if self.architecture.startswith(LOCAL_DIR) else None


def local_clip(value: str, what: str, base_dir: Path | None = None) -> ClipSpec:
    """The CLIP of an open_clip folder in the Hugging Face layout; `value` relative to `base_dir` (None: the
    working directory). `what` names the flag or field in the message when it is not such a folder."""
    path = Path(value[len(LOCAL_DIR):] if value.startswith(LOCAL_DIR) else value).expanduser()
    folder = ((base_dir / path) if base_dir is not None else path).resolve()
    if not is_clip_folder(folder):
        raise UserError(f"{what} {value}: not an open_clip folder (expected {folder} to hold {OPEN_CLIP_CONFIG} "
                        f"and {' or '.join(OPEN_CLIP_WEIGHTS)})")
    return ClipSpec(f"{LOCAL_DIR}{folder}")


def is_clip_folder(folder: Path) -> bool:
    """Whether `folder` holds an open_clip config and checkpoint (the Hugging Face layout)."""
    return (folder / OPEN_CLIP_CONFIG).is_file() and local_checkpoint(folder) is not None


def local_checkpoint(folder: Path) -> Path | None:
    """The open_clip checkpoint file of a local folder (first of OPEN_CLIP_WEIGHTS found), None if none."""
    return next((folder / name for name in OPEN_CLIP_WEIGHTS if (folder / name).is_file()), None)


def folder_digest(folder: Path) -> str:
    """12 hex digits of the SHA-256 of a CLIP folder's config and checkpoint (read once per file version)."""
    files = [folder / OPEN_CLIP_CONFIG, local_checkpoint(folder) or folder / OPEN_CLIP_WEIGHTS[0]]
    try:
        return files_digest(files)
    except OSError:
        raise UserError(f"CLIP folder {folder}: {OPEN_CLIP_CONFIG} or its checkpoint is missing") from None


def files_digest(files) -> str:
    """12 hex digits of the SHA-256 of the files' bytes, in the order given (read once per file version)."""
    return _digest(tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))


@functools.lru_cache(maxsize=32)
def _digest(versions: tuple[tuple[str, int, int], ...]) -> str:
    sha = hashlib.sha256()
    for name, _, _ in versions:
        with open(name, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:12]


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
    name: str             # the preset file's name without .json
    clip: ClipSpec
    depth: str            # a model of storyreel.depth.registry.MODELS, a transformers repo id or folder
    generator: GeneratorSpec
    description: str = ""
    file: str | None = field(default=None, compare=False)  # the preset file it was read from
    extends: str | None = None  # the built-in preset the file builds on


def get_preset(preset: str | ModelPreset | None = None) -> ModelPreset:
    """`--models` value (a preset name or a preset .json file), else $STORYREEL_MODELS, else "default".
    A ModelPreset passes through, so every loader that takes a preset name also takes a preset with
    swapped components."""
    from storyreel.core.preset_files import find_preset

    if isinstance(preset, ModelPreset):
        return preset
    return find_preset(preset or os.environ.get(ENV_VAR) or "default")


def list_presets() -> dict[str, ModelPreset]:
    """Every preset by name: the built-in ones (core/presets/), then the user's (core/preset_files.py)."""
    from storyreel.core.preset_files import presets_by_name

    return presets_by_name()


def as_defined(preset: str | ModelPreset | None) -> ModelPreset:
    """The preset as its file defines it, before any component was swapped (`with_overrides`)."""
    preset = get_preset(preset)
    return get_preset(preset.file or preset.name)


def resolve_preset(name: str | None = None) -> str:
    """The preset name a command uses (what manifests and sidecars record)."""
    return get_preset(name).name


# -- swapping components: `--clip`, `--depth-model`, `--base`, ... and a story file's `models:` section --------


@dataclass(frozen=True)
class Component:
    """One swappable component of a preset and every name it goes by."""

    name: str             # keyword of `with_overrides`
    flag: str             # command-line flag (cli/common.py)
    dest: str             # the flag's argparse dest
    story_key: str        # key in a story file's `models:` section (story/format.py)
    help: str             # the flag's help
    generator: bool       # part of the video generator (cli/common.py `components=("generator",)`)
    takes_path: bool      # a local path may be given (a story file's are relative to it)
    metavar: str = "MODEL"


COMPONENTS = (
    Component("clip", "--clip", "clip_model", "clip", "CLIP instead of the preset's: an open_clip NAME:PRETRAINED_TAG "
              "(ViT-B-16:laion2b_s34b_b88k), hf-hub:ORG/REPO, or a local open_clip folder (open_clip_config.json + "
              "open_clip_model.safetensors)", generator=False, takes_path=True),
    Component("depth", "--depth-model", "depth_model", "depth_model", "depth model instead of the preset's: a MiDaS "
              "registry name, or a transformers depth-estimation model (repo id or local folder, e.g. Depth "
              "Anything V2)", generator=False, takes_path=True),
    Component("base", "--base", "base", "base", "SD1.5-layout base model instead of the preset's: a repo id, a "
              "local diffusers folder, or a single .safetensors/.ckpt checkpoint (ComfyUI/A1111)",
              generator=True, takes_path=True),
    Component("motion_adapter", "--motion-adapter", "motion_adapter", "motion_adapter",
              "AnimateDiff motion adapter: repo id or local folder", generator=True, takes_path=True),
    Component("controlnet", "--controlnet", "controlnet", "controlnet", "depth ControlNet: repo id or local folder",
              generator=True, takes_path=True),
    Component("scheduler", "--scheduler", "scheduler", "scheduler",
              "diffusers scheduler class to sample with, e.g. EulerDiscreteScheduler", generator=True,
              takes_path=False, metavar="CLASS"),
)
FLAGS = {c.name: c.flag for c in COMPONENTS}
BUILT_IN = "storyreel/tiny-"  # ids of the generator models generation/tiny.py builds in code


def is_built_in(model_id: str) -> bool:
    """A tiny generator component made in code (not a repo, folder or file)."""
    return model_id.startswith(BUILT_IN)


def parse_clip(text: str) -> ClipSpec:
    """`--clip` value -> ClipSpec: `hf-hub:ORG/REPO`, a local open_clip folder (a path, or `local-dir:PATH`),
    or open_clip `NAME:PRETRAINED_TAG` (HF repo from open_clip). NAME:TAG never holds a '/'."""
    text = text.strip()
    if text.startswith(HF_HUB):
        if text.count("/") != 1:
            raise UserError(f"--clip {text!r}: expected hf-hub:ORG/REPO")
        return ClipSpec(text)
    if text.startswith((LOCAL_DIR, ".", "~")) or "/" in text or os.sep in text or is_clip_folder(Path(text)):
        return local_clip(text, "--clip")
    architecture, _, tag = text.partition(":")
    if not tag:
        raise UserError(f"--clip {text!r}: expected an open_clip NAME:PRETRAINED_TAG (e.g. "
                        "ViT-B-32:laion2b_s34b_b79k), hf-hub:ORG/REPO or an open_clip folder; "
                        "open_clip.list_pretrained() lists the tags")
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
        preset = replace(preset, depth=local_or_repo(depth, FLAGS["depth"], depth=True))
    generator = preset.generator
    for role, value in (("base", base), ("motion_adapter", motion_adapter), ("controlnet", controlnet)):
        if value is not None:
            generator = replace(generator, **{role: local_or_repo(value, FLAGS[role])})
    if scheduler is not None:
        generator = replace(generator, scheduler=replace(generator.scheduler, name=_scheduler_class(scheduler)))
    return replace(preset, generator=generator)


def preset_from_args(args, **fallbacks) -> ModelPreset:
    """The preset of a parsed command: --models, then whichever of --clip, --depth-model, --base,
    --motion-adapter, --controlnet, --scheduler it has and was given (`fallbacks`: values for the ones
    not given, e.g. a story file's `models:` section)."""
    given = {c.name: getattr(args, c.dest, None) for c in COMPONENTS}
    given = {key: value if value is not None else fallbacks.get(key) for key, value in given.items()}
    return with_overrides(getattr(args, "models", None), **given)


def local_or_repo(value: str, flag: str, *, base_dir: Path | None = None, depth: bool = False) -> str:
    """A model reference as given: an existing path (made absolute, so records say where) or a repo id
    (`depth`: also a depth registry name).

    `flag`: what the message names (`--base`, or `FILE: generator.base` for a preset file); `base_dir`:
    what relative paths are relative to (None: the working directory)."""
    path = Path(value).expanduser()
    if base_dir is not None:
        path = base_dir / path
    if path.exists():
        return str(path.resolve())
    looks_like_file = value.startswith((".", "/", "~")) or value.endswith((".safetensors", ".ckpt"))
    if value.count("/") == 1 and not looks_like_file:
        return value  # ORG/NAME: looked up in the Hugging Face cache when loaded
    if "/" not in value and depth:
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
    return next((p for p in list_presets().values() if p.clip.model_id == model_id), None)


def clip_for_model_id(model_id: str) -> ClipSpec:
    """The CLIP an index recorded (`open_clip:NAME:TAG`, `open_clip:hf-hub:ORG/REPO`,
    `open_clip:local-dir:FOLDER@DIGEST`, or a preset's)."""
    preset = preset_for_model_id(model_id)
    if preset is not None:
        return preset.clip
    prefix = "open_clip:"
    rest = model_id[len(prefix):] if model_id.startswith(prefix) else None
    if rest and rest.startswith(LOCAL_DIR):
        return _recorded_folder(model_id, rest[len(LOCAL_DIR):].rpartition("@")[0])
    if not rest or rest.split(":")[-1].startswith("seed"):
        raise UserError(f"the index's CLIP model {model_id!r} is not one storyreel can rebuild; "
                        "pass --clip or --models")
    return parse_clip(rest)


def _recorded_folder(model_id: str, folder: str) -> ClipSpec:
    """The local CLIP folder an index recorded, if it still holds the same files."""
    if not Path(folder, OPEN_CLIP_CONFIG).is_file():
        raise UserError(f"the index's CLIP folder {folder} is gone; pass --clip FOLDER or --models")
    spec = ClipSpec(f"{LOCAL_DIR}{folder}")
    if spec.model_id != model_id:
        raise UserError(f"the CLIP folder {folder} holds other weights than when the index was built "
                        f"({model_id}); rebuild the index with it, or pass the CLIP it was built with (--clip)")
    return spec
