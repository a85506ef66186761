"""The diffusion components of a preset, read by one loader whatever the preset.

A preset's generator (storyreel.core.models) names three diffusers-format folders (the SD1.5 layout
`unet/ vae/ text_encoder/ tokenizer/ scheduler/`, an AnimateDiff `MotionAdapter`, a depth
`ControlNetModel`) and the scheduler to sample with. `default` finds the public pretrained weights in
the Hugging Face cache (never the network); `tiny` builds small random-init models in code with a
fixed seed (storyreel.generation.tiny) and writes them in the same on-disk layout, so every preset (and
every test) goes through the one loader the real weights use.

    components = create_components("tiny")          # or "default" (pretrained, HF cache only)
    folders = write_tiny_checkpoint(folder)         # storyreel.generation.tiny: base/, motion_adapter/, controlnet/
    components = load_components(**folders)
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from storyreel.core.errors import UserError
from storyreel.core.hub import MODEL_FILES, SD15_CONFIG_FILES, SD15_FILES
from storyreel.core.models import ANIMATEDIFF_DDIM, ModelPreset, SchedulerSpec, as_defined, get_preset, is_built_in


@dataclass
class Components:
    """Everything the pipeline needs; `ids` says where each piece came from (recorded in outputs)."""

    unet: torch.nn.Module  # UNetMotionModel (SD1.5 UNet + AnimateDiff motion modules), or the image UNet
    controlnet: torch.nn.Module  # diffusers ControlNetModel (depth)
    vae: torch.nn.Module  # diffusers AutoencoderKL
    text_encoder: torch.nn.Module  # transformers CLIPTextModel
    tokenizer: object  # transformers CLIPTokenizer
    scheduler: object  # any diffusers scheduler (DDIM by default)
    ids: dict[str, str] = field(default_factory=dict)


# Text2Video-Zero samples with DDIM on the base model's own schedule (no AnimateDiff overrides).
IMAGE_MODEL_DDIM = SchedulerSpec("DDIMScheduler")


def create_components(preset: str | ModelPreset, *, dtype: torch.dtype = torch.float32,
                      backend: str = "animatediff") -> Components:
    """The preset's components: `tiny` built in code, `default` from the Hugging Face cache, any swapped
    one (storyreel.core.models.with_overrides) from its folder, file or repo.

    backend "animatediff": the UNet carries the motion adapter (UNetMotionModel); "t2v-zero": the
    base model's image UNet alone (UNet2DConditionModel) and its own DDIM schedule.
    """
    preset = get_preset(preset)
    spec = preset.generator
    motion = backend == "animatediff"
    scheduler = spec.scheduler if motion else replace(IMAGE_MODEL_DDIM, name=_image_scheduler(preset))
    ids = {"base": spec.base, "controlnet": spec.controlnet}
    if motion:
        ids["motion_adapter"] = spec.motion_adapter
    with contextlib.ExitStack() as stack:
        tiny = {}
        config_base = _config_base(preset)
        if any(is_built_in(ids[role]) for role in ids) or (_is_single_file(spec.base) and is_built_in(config_base)):
            from storyreel.generation.tiny import write_tiny_checkpoint

            # Through disk on purpose: the tiny models take the same loader as the pretrained ones.
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="storyreel-tiny-"))
            with _quiet_libraries():
                tiny = write_tiny_checkpoint(folder, seed=spec.seed or 0)
        where = {"base": tiny.get("base_dir"), "motion_adapter": tiny.get("motion_adapter_dir"),
                 "controlnet": tiny.get("controlnet_dir")}
        single_file = _is_single_file(spec.base)
        folders = {role: where[role] if is_built_in(ids[role]) else _locate(ids[role], role)
                   for role in ids if not (role == "base" and single_file)}
        if single_file:
            config = tiny["base_dir"] if is_built_in(config_base) else _locate(config_base, "base", SD15_CONFIG_FILES)
            folders["base"] = read_single_file(spec.base, config, dtype=dtype)
        return load_components(folders["base"], folders.get("motion_adapter"), folders["controlnet"], ids=ids,
                               scheduler=scheduler, dtype=dtype)


# What each role is called in messages, and the files of its repo it needs (core/hub.py).
ROLES = {"base": ("the Stable Diffusion 1.5 base model", SD15_FILES),
         "motion_adapter": ("the AnimateDiff motion adapter", MODEL_FILES),
         "controlnet": ("the depth ControlNet", MODEL_FILES)}


def _is_single_file(model: str) -> bool:
    return model.endswith((".safetensors", ".ckpt")) and Path(model).is_file()


def _config_base(preset: ModelPreset) -> str:
    """The base model whose configs a single-file base is read with: the preset's own (before --base), or
    when that is a single file too, the base of the built-in preset its file extends (else `default`'s)."""
    defined = as_defined(preset)
    if not _is_single_file(defined.generator.base):
        return defined.generator.base
    return get_preset(defined.extends or "default").generator.base


def _image_scheduler(preset: ModelPreset) -> str:
    """Text2Video-Zero samples with DDIM unless the scheduler was swapped (--scheduler)."""
    swapped = preset.generator.scheduler.name != as_defined(preset).generator.scheduler.name
    return preset.generator.scheduler.name if swapped else IMAGE_MODEL_DDIM.name


def _locate(model: str, role: str, files=None):
    """A component's folder: a local folder as given, else its repo's snapshot in the HF cache (with `files`)."""
    from storyreel.core.hub import hf_folder

    what, needed = ROLES[role]
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"--{role.replace('_', '-')} {model}: expected a diffusers-format folder"
                        + (" or a .safetensors/.ckpt single-file checkpoint" if role == "base" else ""))
    return hf_folder(model, what, files or needed)


def read_single_file(checkpoint, config_dir, *, dtype: torch.dtype = torch.float32) -> dict:
    """The SD1.5 models of a single-file (original LDM layout) checkpoint, as ComfyUI and A1111 keep them.

    diffusers' single-file converters (what `from_single_file` runs) rename the weights; `config_dir` is
    an SD1.5-layout diffusers folder whose configs describe the architecture (the preset's base: for
    `default` only its `*.json` and `tokenizer/` need be in the cache), so nothing is fetched. Returns
    the models for `load_components`.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        load_single_file_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    config_dir = Path(config_dir)
    try:
        state = load_single_file_checkpoint(str(checkpoint), local_files_only=True)
    except Exception as err:  # safetensors / torch.load errors have many types; all mean "not a checkpoint"
        raise UserError(f"--base {checkpoint}: cannot read it as a checkpoint ({str(err).splitlines()[0]})") from None
    if not any(key.startswith("model.diffusion_model.") for key in state):
        raise UserError(f"--base {checkpoint}: not a Stable Diffusion 1.x single-file checkpoint "
                        "(no model.diffusion_model.* weights)")
    models = {}
    with _quiet_libraries():
        for name, cls, convert in (("unet", UNet2DConditionModel, convert_ldm_unet_checkpoint),
                                   ("vae", AutoencoderKL, convert_ldm_vae_checkpoint)):
            config = cls.load_config(config_dir / name)
            models[name] = cls.from_config(config)
            _load_exactly(models[name], lambda c=convert, k=config: c(state, k), checkpoint, name)
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder"))
        _load_exactly(text_encoder, lambda: convert_ldm_clip_checkpoint(state), checkpoint, "text encoder")
        if dtype != torch.float32:
            models = {name: model.to(dtype) for name, model in models.items()}
            text_encoder = text_encoder.to(dtype)
    return {**models, "text_encoder": text_encoder, "dir": config_dir}


def _load_exactly(model: torch.nn.Module, convert, checkpoint, what: str) -> None:
    """Every weight of `model` from `convert()` (CLIP's position ids are a buffer, recomputed), else a UserError:
    a checkpoint of another architecture misses keys or has other shapes."""
    expected = "expected a Stable Diffusion 1.x checkpoint matching the preset's architecture"
    try:
        missing, _ = model.load_state_dict(convert(), strict=False)
    except (KeyError, RuntimeError, ValueError, IndexError) as err:
        problem = str(err).strip().splitlines()[-1].strip()[:200]
        raise UserError(f"--base {checkpoint}: its {what} does not fit ({problem}); {expected}") from None
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing:
        raise UserError(f"--base {checkpoint}: its {what} lacks {missing[0]} ({len(missing)} weights missing); "
                        f"{expected}")


def load_components(base_dir, motion_adapter_dir, controlnet_dir, *, ids: dict[str, str] | None = None,
                    scheduler: SchedulerSpec = ANIMATEDIFF_DDIM, dtype: torch.dtype = torch.float32) -> Components:
    """Read diffusers-format folders (SD1.5 layout base, MotionAdapter, ControlNet) into `Components`.

    `motion_adapter_dir` None: the image UNet alone (Text2Video-Zero). `scheduler`: the class to
    sample with, configured from `base_dir/scheduler` plus its overrides. `base_dir` may instead be
    `read_single_file`'s models (with the folder of their tokenizer and scheduler). fp16-variant weights
    (`*.fp16.safetensors`) are read for fp16, and whenever they are the only ones there.
    """
    import diffusers
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    loaded = base_dir if isinstance(base_dir, dict) else None
    base_dir = Path(loaded["dir"] if loaded else base_dir)
    controlnet_dir = Path(controlnet_dir)
    motion_adapter_dir = Path(motion_adapter_dir) if motion_adapter_dir is not None else None
    needed = [base_dir / "tokenizer", base_dir / "scheduler", motion_adapter_dir, controlnet_dir]
    if not loaded:
        needed += [base_dir / "unet", base_dir / "vae", base_dir / "text_encoder"]
    for folder in needed:
        if folder is not None and not folder.is_dir():
            raise UserError(f"model folder {folder} is missing; expected a diffusers-format checkpoint there")

    def read(cls, folder, weights="diffusion_pytorch_model.safetensors"):
        return cls.from_pretrained(folder, torch_dtype=dtype, variant=_variant(folder, weights, dtype))

    with _quiet_libraries():
        unet = loaded["unet"] if loaded else read(UNet2DConditionModel, base_dir / "unet")
        if motion_adapter_dir is not None:
            motion_adapter = read(MotionAdapter, motion_adapter_dir)
            unet = UNetMotionModel.from_unet2d(unet, motion_adapter).to(dtype)
        scheduler_class = getattr(diffusers, scheduler.name)
        components = Components(
            unet=unet,
            controlnet=read(ControlNetModel, controlnet_dir),
            vae=loaded["vae"] if loaded else read(AutoencoderKL, base_dir / "vae"),
            text_encoder=loaded["text_encoder"] if loaded else read(CLIPTextModel, base_dir / "text_encoder",
                                                                     "model.safetensors"),
            tokenizer=CLIPTokenizer.from_pretrained(base_dir / "tokenizer"),
            scheduler=scheduler_class.from_pretrained(base_dir / "scheduler", **scheduler.config),
            ids=dict(ids or {"base": str(base_dir), "controlnet": str(controlnet_dir)}
                     | ({"motion_adapter": str(motion_adapter_dir)} if motion_adapter_dir else {})),
        )
    for module in (components.unet, components.controlnet, components.vae, components.text_encoder):
        module.eval().requires_grad_(False)
    return components


def _variant(folder: Path, weights: str, dtype: torch.dtype) -> str | None:
    """"fp16" when the folder has the fp16 variant of its weights and it is what to read: fp16 inference
    (half the bytes to load), or a cache fetched with `*.fp16.safetensors` alone."""
    from storyreel.core.hub import fp16_variant

    if not (folder / fp16_variant(weights)).is_file():
        return None
    return "fp16" if dtype == torch.float16 or not (folder / weights).is_file() else None


@contextlib.contextmanager
def _quiet_libraries():
    """Silence diffusers/transformers info lines and progress bars while loading (stderr is ours)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        for library in (diffusers_logging, transformers_logging):
            library.enable_progress_bar()
