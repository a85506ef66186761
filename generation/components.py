"""The diffusion components of a preset, read by one loader whatever the preset.

A preset's generator (storyreel.core.models) names three diffusers-format folders (the SD1.5 layout
`unet/ vae/ text_encoder/ tokenizer/ scheduler/`, an AnimateDiff `MotionAdapter`, a depth
`ControlNetModel`) and the scheduler to sample with. `default` finds the public pretrained weights in
the Hugging Face cache (never the network); `tiny` builds small random-init models in code with a
fixed seed (storyreel.testing.tiny) and writes them in the same on-disk layout, so every preset (and
every test) goes through the one loader the real weights use.

    components = create_components("tiny")          # or "default" (pretrained, HF cache only)
    folders = write_tiny_checkpoint(folder)         # storyreel.testing.tiny: base/, motion_adapter/, controlnet/
    components = load_components(**folders)
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from storyreel.core.errors import UserError
from storyreel.core.models import ANIMATEDIFF_DDIM, ModelPreset, SchedulerSpec, get_preset


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
    """The preset's components: `tiny` built in code, `default` from the Hugging Face cache.

    backend "animatediff": the UNet carries the motion adapter (UNetMotionModel); "t2v-zero": the
    base model's image UNet alone (UNet2DConditionModel) and its own DDIM schedule.
    """
    spec = get_preset(preset).generator
    motion = backend == "animatediff"
    scheduler = spec.scheduler if motion else IMAGE_MODEL_DDIM
    ids = {"base": spec.base, "controlnet": spec.controlnet}
    if motion:
        ids["motion_adapter"] = spec.motion_adapter
    if spec.seed is not None:
        from storyreel.testing.tiny import write_tiny_checkpoint

        # Through disk on purpose: the tiny models take the same loader as the pretrained ones.
        with tempfile.TemporaryDirectory(prefix="storyreel-tiny-") as folder, _quiet_libraries():
            folders = write_tiny_checkpoint(folder, seed=spec.seed)
            if not motion:
                folders["motion_adapter_dir"] = None
            return load_components(**folders, ids=ids, scheduler=scheduler, dtype=dtype)
    from storyreel.core.hub import hf_folder

    return load_components(
        hf_folder(spec.base, "the Stable Diffusion 1.5 base model"),
        hf_folder(spec.motion_adapter, "the AnimateDiff motion adapter") if motion else None,
        hf_folder(spec.controlnet, "the depth ControlNet"),
        ids=ids, scheduler=scheduler, dtype=dtype,
    )


def load_components(base_dir, motion_adapter_dir, controlnet_dir, *, ids: dict[str, str] | None = None,
                    scheduler: SchedulerSpec = ANIMATEDIFF_DDIM, dtype: torch.dtype = torch.float32) -> Components:
    """Read diffusers-format folders (SD1.5 layout base, MotionAdapter, ControlNet) into `Components`.

    `motion_adapter_dir` None: the image UNet alone (Text2Video-Zero). `scheduler`: the class to
    sample with, configured from `base_dir/scheduler` plus its overrides.
    """
    import diffusers
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    base_dir, controlnet_dir = Path(base_dir), Path(controlnet_dir)
    motion_adapter_dir = Path(motion_adapter_dir) if motion_adapter_dir is not None else None
    for folder in (base_dir / "unet", base_dir / "vae", base_dir / "text_encoder", base_dir / "tokenizer",
                   base_dir / "scheduler", motion_adapter_dir, controlnet_dir):
        if folder is not None and not folder.is_dir():
            raise UserError(f"model folder {folder} is missing; expected a diffusers-format checkpoint there")
    with _quiet_libraries():
        unet = UNet2DConditionModel.from_pretrained(base_dir / "unet", torch_dtype=dtype)
        if motion_adapter_dir is not None:
            motion_adapter = MotionAdapter.from_pretrained(motion_adapter_dir, torch_dtype=dtype)
            unet = UNetMotionModel.from_unet2d(unet, motion_adapter).to(dtype)
        scheduler_class = getattr(diffusers, scheduler.name)
        components = Components(
            unet=unet,
            controlnet=ControlNetModel.from_pretrained(controlnet_dir, torch_dtype=dtype),
            vae=AutoencoderKL.from_pretrained(base_dir / "vae", torch_dtype=dtype),
            text_encoder=CLIPTextModel.from_pretrained(base_dir / "text_encoder", torch_dtype=dtype),
            tokenizer=CLIPTokenizer.from_pretrained(base_dir / "tokenizer"),
            scheduler=scheduler_class.from_pretrained(base_dir / "scheduler", **scheduler.config),
            ids=dict(ids or {"base": str(base_dir), "controlnet": str(controlnet_dir)}
                     | ({"motion_adapter": str(motion_adapter_dir)} if motion_adapter_dir else {})),
        )
    for module in (components.unet, components.controlnet, components.vae, components.text_encoder):
        module.eval().requires_grad_(False)
    return components


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
