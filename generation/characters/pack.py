"""The character-pack file: one safetensors file per character, and loading packs into a pipeline.

A pack holds `timeinv.table` (the TimeInv rows), `lora.*` (the peft state dict of the spatial LoRA
adapter; none in a `--mode ti` pack, whose rank and alpha are then 0), `concept.images` (uint8
thumbnails, for CLIP-I in evaluation) and string metadata (token, init word, mode, base model ids,
training settings, image hashes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write
from storyreel.generation.characters.lora import adapter_name_for, add_spatial_lora, load_lora_state_dict
from storyreel.generation.characters.tokens import CharacterTokens, TimeInvTable

PACK_FORMAT = "storyreel-character/1"
# Component ids (`StructureGuidedPipeline.ids`) a pack depends on: the table lives in the base
# model's text-embedding space and the LoRA in its spatial attention layers; the motion adapter
# and ControlNet can change without invalidating a pack.
PACK_BASE_COMPONENTS = ("base",)


@dataclass
class CharacterPack:
    token: str
    init_word: str
    mode: str  # "timeinv" or "ti"
    table: torch.Tensor  # (B, d) float32
    num_train_timesteps: int
    lora: dict[str, torch.Tensor]  # peft state dict (adapter name stripped); empty for mode "ti"
    lora_rank: int
    lora_alpha: float
    base_model: dict[str, str]  # component ids the pack was trained on
    settings: dict = field(default_factory=dict)
    image_hashes: list[str] = field(default_factory=list)
    concept_images: torch.Tensor | None = None  # (N, S, S, 3) uint8 thumbnails

    def make_table(self) -> TimeInvTable:
        table = TimeInvTable(self.table[0], self.table.shape[0], self.num_train_timesteps)
        with torch.no_grad():
            table.rows.copy_(self.table)
        table.requires_grad_(False)
        return table


def save_pack(pack: CharacterPack, path: str | os.PathLike) -> None:
    """Write the pack atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tensors = {"timeinv.table": pack.table.detach().float().contiguous()}
    tensors.update({f"lora.{k}": v.detach().contiguous() for k, v in pack.lora.items()})
    if pack.concept_images is not None:
        tensors["concept.images"] = pack.concept_images.contiguous()
    metadata = {
        "format": PACK_FORMAT,
        "token": pack.token,
        "init_word": pack.init_word,
        "mode": pack.mode,
        "num_train_timesteps": str(pack.num_train_timesteps),
        "lora_rank": str(pack.lora_rank),
        "lora_alpha": str(pack.lora_alpha),
        "base_model": json.dumps(pack.base_model, sort_keys=True),
        "settings": json.dumps(pack.settings, sort_keys=True),
        "image_hashes": json.dumps(pack.image_hashes),
    }
    try:
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except OSError as err:
        raise UserError(f"cannot write character pack {path}: {err.strerror or err}") from None


def load_pack(path: str | os.PathLike) -> CharacterPack:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"character pack {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path} is not a character pack (unreadable safetensors: {err})") from None
    if metadata.get("format") != PACK_FORMAT or "timeinv.table" not in tensors:
        raise UserError(f"{path} is not a character pack (format {metadata.get('format')!r}, expected {PACK_FORMAT!r})")
    return CharacterPack(
        token=metadata["token"],
        init_word=metadata["init_word"],
        mode=metadata["mode"],
        table=tensors["timeinv.table"],
        num_train_timesteps=int(metadata["num_train_timesteps"]),
        lora={k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")},
        lora_rank=int(metadata["lora_rank"]),
        lora_alpha=float(metadata["lora_alpha"]),
        base_model=json.loads(metadata["base_model"]),
        settings=json.loads(metadata["settings"]),
        image_hashes=json.loads(metadata["image_hashes"]),
        concept_images=tensors.get("concept.images"),
    )


def check_base_model(pack: CharacterPack, base_model: dict[str, str], path) -> None:
    """Refuse a pack trained on other weights: its table and LoRA would mean nothing here."""
    for component in PACK_BASE_COMPONENTS:
        trained, here = pack.base_model.get(component), base_model.get(component)
        if trained != here:
            raise UserError(
                f"character pack {path} was trained for {component} {trained!r} but this generator uses {here!r}; "
                f"retrain it with the same --models preset"
            )


def load_characters(models, paths, lora_scale: float = 1.0) -> CharacterTokens:
    """Load several packs (distinct tokens) into `models`' tokenizer and UNet; returns the token resolver.

    `models` is a `generation.components.Components` or a `StructureGuidedPipeline` (anything with
    tokenizer, text_encoder, unet and ids). Its UNet gains one LoRA adapter per pack that has LoRA
    tensors, at `lora_scale`; a pack without any (`--mode ti`) adds only its token.
    """
    tokens = CharacterTokens(models.tokenizer, models.text_encoder)
    scales = {}
    for path in paths:
        pack = load_pack(path)
        check_base_model(pack, models.ids, path)
        if pack.token in tokens.tokens:
            raise UserError(f"character pack {path} uses token {pack.token!r}, "
                            "already taken by another --character pack")
        tokens.add(pack.token, pack.make_table())
        if not pack.lora:  # a textual-inversion pack (`--mode ti`): the token alone, the UNet stays untouched
            continue
        name = adapter_name_for(pack.token)
        add_spatial_lora(models.unet, name, pack.lora_rank, pack.lora_alpha)
        load_lora_state_dict(models.unet, name, pack.lora)
        tokens.adapters[pack.token] = name
        scales[name] = lora_scale
    if scales:
        models.unet.set_adapters(list(scales), list(scales.values()))
        models.unet.requires_grad_(False)
    return tokens
