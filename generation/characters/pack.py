"""The character-pack file: one safetensors file per character, and loading packs into a pipeline.

A pack holds `timeinv.table` (the TimeInv rows), `lora.*` (the peft state dict of the spatial LoRA
adapter; none in a `--mode ti` pack, whose rank and alpha are then 0), `concept.images` (uint8
thumbnails, for CLIP-I in evaluation) and string metadata (token, init word, mode, base model ids,
training settings, image hashes).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write
from storyreel.generation.characters.lora import (
    LORA_PROJECTIONS,
    adapter_name_for,
    add_spatial_lora,
    load_lora_state_dict,
)
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
    mode: str  # "timeinv", "ti" or "lora" (generation/characters/tokens.py MODES)
    table: torch.Tensor  # (B, d) float32
    num_train_timesteps: int
    lora: dict[str, torch.Tensor]  # peft state dict (adapter name stripped); empty for mode "ti"
    lora_rank: int
    lora_alpha: float
    base_model: dict[str, str]  # component ids the pack was trained on
    settings: dict = field(default_factory=dict)
    image_hashes: list[str] = field(default_factory=list)
    concept_images: torch.Tensor | None = None  # (N, S, S, 3) uint8 thumbnails

    @property
    def lora_targets(self) -> tuple[str, ...]:
        """The attention projections its LoRA adapts (the training settings'; every one for older packs)."""
        return tuple(self.settings.get("lora_targets", LORA_PROJECTIONS))

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


def pack_init_word(path: str | os.PathLike) -> str:
    """A pack's init word (its class word: "dog"), read from the file's header alone; a file that is not a
    readable pack gets load_pack's one-line error."""
    metadata = _header(path)
    if metadata.get("format") == PACK_FORMAT and metadata.get("init_word"):
        return metadata["init_word"]
    return load_pack(path).init_word


def pack_summary(path: str | os.PathLike) -> dict:
    """How a pack was trained, from its header: mode, recipe, TimeInv rows and the anchors they were learned
    through (None: every row on its own), LoRA rank and targets: what a generated clip's sidecar records."""
    metadata = _header(path)
    try:
        settings = json.loads(metadata["settings"])
        rows = int(metadata["table_shape"][0])
        return {"mode": metadata["mode"], "recipe": settings.get("recipe", "fast"), "timeinv_rows": rows,
                "anchors": settings.get("anchors") if rows > 1 else None, "lora_rank": int(metadata["lora_rank"]),
                "lora_targets": list(settings.get("lora_targets", LORA_PROJECTIONS))}
    except (KeyError, ValueError, TypeError):
        load_pack(path)  # a header that is not a pack's: load_pack's one-line error names what is wrong
        raise  # not reached: a file load_pack accepts has every field read above


def _header(path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:  # the header alone: no tensor is read
            shape = f.get_slice("timeinv.table").get_shape() if "timeinv.table" in f.keys() else None
            return {**(f.metadata() or {}), "table_shape": shape}
    except (SafetensorError, OSError, ValueError):
        return {}


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
    try:
        pack = CharacterPack(
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
    except KeyError as err:
        raise UserError(f"character pack {path} is damaged: metadata {err} is missing; train it again") from None
    except ValueError as err:  # int()/float() of a non-number, bad JSON (JSONDecodeError is a ValueError)
        raise UserError(f"character pack {path} is damaged: bad metadata ({str(err)[:100]}); train it again") from None
    problem = pack_problem(pack)
    if problem:
        raise UserError(f"character pack {path} is damaged: {problem}; train it again")
    return pack


def pack_problem(pack: CharacterPack) -> str | None:
    """What makes a loaded pack unusable (types, shapes, finiteness, metadata agreeing with tensors), or None."""
    from storyreel.generation.characters.tokens import MODES, check_token

    try:
        check_token(pack.token, "token")
    except UserError as err:
        return str(err)
    if pack.mode not in MODES:
        return f"mode {pack.mode!r} is not one of {', '.join(MODES)}"
    if not isinstance(pack.base_model, dict) or not isinstance(pack.settings, dict):
        return "base_model and settings must be JSON objects"
    if not isinstance(pack.image_hashes, list):
        return "image_hashes must be a JSON list"
    if not 1 <= pack.num_train_timesteps <= 100_000:
        return f"num_train_timesteps {pack.num_train_timesteps} is out of range"
    table = pack.table
    if table.ndim != 2 or not table.is_floating_point():
        return f"timeinv.table must be a 2-D float table, got {tuple(table.shape)} {table.dtype}"
    if not 1 <= table.shape[0] <= pack.num_train_timesteps or (pack.mode == "ti" and table.shape[0] != 1):
        return f"timeinv.table has {table.shape[0]} rows for mode {pack.mode} and {pack.num_train_timesteps} timesteps"
    if not torch.isfinite(table).all():
        return "timeinv.table holds NaN or infinite values"
    if not (math.isfinite(pack.lora_alpha) and 0 <= pack.lora_rank <= 1024):
        return f"lora_rank {pack.lora_rank} / lora_alpha {pack.lora_alpha} are out of range"
    if (pack.lora_rank > 0) != bool(pack.lora):
        return f"lora_rank is {pack.lora_rank} but the pack has {len(pack.lora)} LoRA tensors"
    for key, value in pack.lora.items():
        if not value.is_floating_point() or not torch.isfinite(value).all():
            return f"LoRA tensor {key} is not finite floats ({value.dtype})"
        if value.ndim != 2 or pack.lora_rank not in value.shape:
            return f"LoRA tensor {key} has shape {tuple(value.shape)}, not rank {pack.lora_rank}"
    for key in pack.lora:  # peft saves each layer as a lora_A / lora_B pair
        partner = key.replace("lora_A", "lora_B") if "lora_A" in key else key.replace("lora_B", "lora_A")
        if partner != key and partner not in pack.lora:
            return f"LoRA tensor {key} has no partner {partner}"
    images = pack.concept_images
    if images is not None and (images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3):
        return f"concept.images must be uint8 (N, S, S, 3), got {tuple(images.shape)} {images.dtype}"
    return None


def base_identity(model_id: str) -> str:
    """What a pack records of the model it was trained on: a repo id as it is; a local folder by its name and
    the digest of its weights files, so that a pack keeps working when the folder moves (the toy preset's
    packs ship beside its weights, core/presets/toy/)."""
    from storyreel.core.models import files_digest

    weights = sorted(Path(model_id).rglob("*.safetensors")) if Path(model_id).is_dir() else []
    return f"{Path(model_id).name}@{files_digest(weights)}" if weights else model_id


def check_base_model(pack: CharacterPack, base_model: dict[str, str], path) -> None:
    """Refuse a pack trained on other weights: its table and LoRA would mean nothing here."""
    for component in PACK_BASE_COMPONENTS:
        trained, here = pack.base_model.get(component), base_model.get(component)
        here = base_identity(here) if here else here
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
        width = models.text_encoder.get_input_embeddings().embedding_dim
        if pack.table.shape[1] != width:
            raise UserError(f"character pack {path} has {pack.table.shape[1]}-wide token embeddings; this text "
                            f"encoder's are {width} wide (train the pack with the same --models preset)")
        tokens.add(pack.token, pack.make_table())
        if not pack.lora:  # a textual-inversion pack (`--mode ti`): the token alone, the UNet stays untouched
            continue
        name = adapter_name_for(pack.token)
        add_spatial_lora(models.unet, name, pack.lora_rank, pack.lora_alpha, pack.lora_targets)
        load_lora_state_dict(models.unet, name, pack.lora)
        tokens.adapters[pack.token] = name
        scales[name] = lora_scale
    if scales:
        models.unet.set_adapters(list(scales), list(scales.values()))
        models.unet.requires_grad_(False)
    return tokens
