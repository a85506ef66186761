"""One clip from a prompt and a structure source: the Python front door behind `storyreel generate`.

    summary = generate_clip("a teddy bear walks in a park", "walk.mp4", "clip.mp4", preset="tiny", tau=0.5)

The structure source is a video or a clip id (depth estimated by `depth/`), or a depth video written
by `storyreel depth` (recognized by its `<file>.json` sidecar with "kind": "depth", or forced with
`structure_kind="depth"`), which is used as it is. `depth.conditioning_for_source` does all of that.
"""

from __future__ import annotations

import json

import torch

from generation.characters import character_conditioning
from generation.components import create_components, generation_preset
from generation.sampler import StructureGuidedSampler
from generation.writers import check_writable, sidecar_path, write_video
from index.progress import Progress


def generate_clip(prompt: str, structure, out, *, preset: str = "default", tau: float = 0.5,
                  frames: int | None = None, seed: int = 0, steps: int | None = None, height: int | None = None,
                  width: int | None = None, cfg: float | None = None, negative_prompt: str = "",
                  structure_scale: float = 1.0, index_dir=None, structure_kind: str = "auto",
                  dtype: torch.dtype | None = None, device: str | None = None, cpu_offload: bool = False,
                  fps: float = 8.0, characters=(), lora_scale: float = 1.0) -> dict:
    """Generate one clip into `out` (.mp4/.gif/PNG folder) plus `<out>.json`; returns that sidecar's content."""
    check_writable(out)  # before minutes of sampling
    spec = generation_preset(preset)
    frames, height, width = frames or spec.frames, height or spec.height, width or spec.width
    steps, cfg = steps or spec.steps, spec.cfg if cfg is None else cfg
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # fp16 on a GPU is what makes 16 frames at 512x512 fit in 12 GB; the CPU has no fast fp16.
    dtype = dtype or (torch.float16 if device != "cpu" else torch.float32)

    depth, structure_info, notes = load_structure(structure, preset=preset, frames=frames, size=(height, width),
                                                  index_dir=index_dir, kind=structure_kind)
    sampler = StructureGuidedSampler.from_components(create_components(preset, dtype=dtype), device=device,
                                                     cpu_offload=cpu_offload)
    text_conditioning = character_conditioning(sampler, list(characters), prompt, negative_prompt, lora_scale)
    progress = Progress("generate")
    result = sampler(
        prompt, depth, negative_prompt=negative_prompt, num_frames=frames, height=height, width=width,
        num_inference_steps=steps, guidance_scale=cfg, structure_scale=structure_scale, tau=tau,
        generator=torch.Generator().manual_seed(seed), text_conditioning=text_conditioning,
        on_step=lambda done, total: progress.update(step=f"{done}/{total}", force=done == total),
    )
    notes += result.notes
    metadata = {"kind": "generated", "preset": preset, "seed": seed, **result.settings,
                "structure": structure_info, "characters": [str(p) for p in characters], "lora_scale": lora_scale,
                "structure_forward_passes": result.structure_forward_passes, "windows": result.windows, "notes": notes}
    write_video(result.frames, out, fps=fps, metadata=metadata)
    return json.loads(sidecar_path(out).read_text())


def load_structure(source, *, preset: str, frames: int, size: tuple[int, int], index_dir=None,
                   kind: str = "auto") -> tuple[torch.Tensor, dict, list[str]]:
    """(depth (F, 3, H, W) in [0, 1], info, notes) for a structure source (see depth.conditioning_for_source)."""
    import depth

    conditioning, info = depth.conditioning_for_source(
        source, model=depth.model_for_preset(preset), size=size, num_frames=frames, index_dir=index_dir,
        source_kind=kind)
    notes = []
    if info["frame_sampling"] == "repeated":
        notes.append(f"structure {info['source']} has {info['source_frames']} frames, resampled to {frames}")
    return conditioning, info, notes
