"""A character pack as files other tools load (`storyreel character export`).

    export_pack("teddy.safetensors", "teddy_lora.safetensors", "diffusers")   # pipe.load_lora_weights(...)
    export_pack("teddy.safetensors", "teddy_kohya.safetensors", "kohya")      # ComfyUI / A1111 LoRA loaders
    export_pack("teddy.safetensors", "teddy_ti.safetensors", "ti")            # pipe.load_textual_inversion(...)

A pack is two things: the token's text embedding (TimeInv table) and a LoRA on the UNet's spatial
attention. Other tools take them as two files:

* diffusers: the LoRA with peft key names under `unet.` plus diffusers' `lora_adapter_metadata` (rank,
  alpha, target layers), as `save_lora_weights` writes it.
* kohya: the same LoRA renamed by diffusers' `convert_state_dict_to_kohya`:
  `lora_unet_<module path with underscores>.lora_down.weight` / `.lora_up.weight` / `.alpha`.
* ti: `{token: (1, d) float32}`, the single-tensor embedding file that diffusers' `load_textual_inversion`,
  A1111 and ComfyUI read. Exact for `--mode ti` packs (one row). A TimeInv pack has one row per timestep
  bucket, which a plain embedding cannot express: the export is the mean of the rows that sampling with
  `steps` DDIM steps reads (the approximation is recorded in the file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write
from storyreel.generation.characters.lora import spatial_lora_targets
from storyreel.generation.characters.pack import CharacterPack, load_pack

FORMATS = ("diffusers", "kohya", "ti")
DEFAULT_TI_STEPS = 25  # the default preset's sampling steps (core/models.py)


def export_pack(pack_path, out, fmt: str, *, steps: int = DEFAULT_TI_STEPS) -> dict:
    """Write pack `pack_path` to `out` in format `fmt` (FORMATS); returns a summary dict."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out} must end in .safetensors")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    pack = load_pack(pack_path)
    if fmt == "ti":
        tensors, metadata = ti_embedding(pack, steps)
    else:
        if not pack.lora:
            raise UserError(f"character pack {pack_path} has no LoRA (trained with --mode ti); "
                            f"export its token with --format ti")
        tensors, metadata = (diffusers_lora(pack) if fmt == "diffusers" else kohya_lora(pack))
    _save(tensors, out, {"format": "pt", **metadata})
    return {"out": str(out), "format": fmt, "token": pack.token, "tensors": len(tensors),
            "note": metadata.get("storyreel_note", "")}


def diffusers_lora(pack: CharacterPack) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keys `unet.<peft name>` and the adapter config, as diffusers' `save_lora_weights` writes them."""
    tensors = {f"unet.{key}": value for key, value in pack.lora.items()}
    config = {"r": pack.lora_rank, "lora_alpha": pack.lora_alpha, "init_lora_weights": True, "bias": "none",
              "target_modules": spatial_lora_targets(pack.lora_targets)}
    return tensors, {"lora_adapter_metadata": json.dumps({f"unet.{k}": v for k, v in config.items()}, sort_keys=True)}


def kohya_lora(pack: CharacterPack) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """kohya-ss names (`lora_unet_…lora_down/lora_up/alpha`) through diffusers' own converter."""
    from diffusers.utils import convert_state_dict_to_kohya

    tensors = convert_state_dict_to_kohya({f"unet.{key}": value for key, value in pack.lora.items()})
    for key in tensors:
        if key.endswith(".alpha"):  # the converter writes alpha = rank; the pack knows its own alpha
            tensors[key] = torch.tensor(float(pack.lora_alpha))
    return tensors, {"ss_network_module": "networks.lora", "ss_network_dim": str(pack.lora_rank),
                     "ss_network_alpha": str(pack.lora_alpha)}


def ti_embedding(pack: CharacterPack, steps: int = DEFAULT_TI_STEPS) -> tuple[dict[str, torch.Tensor], dict]:
    """`{token: (1, d)}`: the pack's single row (`--mode ti`), or the mean of the TimeInv rows `steps` steps read."""
    table = pack.table.float()
    if table.shape[0] == 1:
        return {pack.token: table.clone()}, {"storyreel_note": "exact: the pack's only row"}
    rows = sorted(set(inference_rows(pack, steps)))
    note = (f"approximation: mean of the {len(rows)} TimeInv rows that {steps}-step DDIM sampling reads "
            f"(a plain embedding has no per-timestep rows)")
    return {pack.token: table[rows].mean(0, keepdim=True)}, {"storyreel_note": note}


def inference_rows(pack: CharacterPack, steps: int) -> list[int]:
    """The table rows sampling reads: one per timestep of the generation scheduler (core/models.py)."""
    from diffusers import DDIMScheduler

    from storyreel.core.models import ANIMATEDIFF_DDIM

    if steps < 1:
        raise UserError(f"--steps must be at least 1 (got {steps})")
    scheduler = DDIMScheduler(num_train_timesteps=pack.num_train_timesteps, **ANIMATEDIFF_DDIM.config)
    scheduler.set_timesteps(steps)
    table = pack.make_table()
    return [table.bucket(int(t)) for t in scheduler.timesteps]


def _save(tensors: dict[str, torch.Tensor], out: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    try:
        atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
