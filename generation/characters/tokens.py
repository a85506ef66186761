"""Character tokens (Animate-A-Story TimeInv + spatial LoRA) and the character-pack file format.

A character is a made-up token such as "<teddy>" whose text embedding is learned from a few images:

* TimeInv table: V ∈ R^{B×d}, one row per bucket of diffusion timesteps (B = number of training
  timesteps by default, so one row per timestep as in the paper). At timestep t the token's input
  embedding is V[bucket(t)]. Mode "ti" (classic textual inversion, the baseline) is the same table
  with B = 1.
* LoRA on the UNet's *spatial* self- and cross-attention q/k/v/out projections only. The motion
  modules use the same layer names, so the target pattern keys on the module path (`attentions.`,
  never `motion_modules.`).

The token never enters the text encoder's vocabulary (its weights stay untouched): it is added to
the tokenizer, and a forward hook on the text encoder's input-embedding layer swaps in the table row
wherever the token appears. Many characters can be active at once, each with its own token.

A pack is one safetensors file: `timeinv.table`, `lora.*` (peft state dict of the adapter),
`concept.images` (uint8 thumbnails, for CLIP-I in evaluation) and string metadata (token, init
word, mode, base model ids, training settings, image hashes).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write

PACK_FORMAT = "storyreel-character/1"
MODES = ("timeinv", "ti")
# Spatial attention of UNetMotionModel: `*.attentions.N.transformer_blocks.M.attn1|attn2.*`.
# Motion modules live under `*.motion_modules.*` and are deliberately not matched.
SPATIAL_LORA_TARGETS = r".*\.attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
# Component ids (generation.components `Components.ids`) a pack depends on: the table lives in the
# base model's text-embedding space and the LoRA in its spatial attention layers; the motion adapter
# and ControlNet can change without invalidating a pack.
PACK_BASE_COMPONENTS = ("base",)


class TimeInvTable(nn.Module):
    """Token embedding per timestep bucket: row `bucket(t)` is the token's embedding at timestep t."""

    def __init__(self, init_embedding: torch.Tensor, num_buckets: int, num_train_timesteps: int):
        super().__init__()
        if not 1 <= num_buckets <= num_train_timesteps:
            raise UserError(f"--buckets must be between 1 and {num_train_timesteps}, got {num_buckets}")
        self.num_train_timesteps = num_train_timesteps
        self.rows = nn.Parameter(init_embedding.detach().float().reshape(1, -1).repeat(num_buckets, 1).clone())

    @property
    def num_buckets(self) -> int:
        return self.rows.shape[0]

    def bucket(self, timestep: int) -> int:
        """Equal-width buckets over [0, T): with B = T, bucket(t) = t."""
        t = min(max(int(timestep), 0), self.num_train_timesteps - 1)
        return t * self.num_buckets // self.num_train_timesteps

    def forward(self, timestep: int) -> torch.Tensor:
        return self.rows[self.bucket(timestep)]


def single_token_id(tokenizer, word: str) -> int:
    """Id of `word` if the tokenizer encodes it as exactly one token; a UserError otherwise."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise UserError(
            f"--init-word {word!r} is {len(ids)} tokens for this tokenizer; pick a word that is a single "
            f"token (a plain common noun such as 'bear' or 'cat')"
        )
    return ids[0]


def check_new_token(tokenizer, token: str) -> None:
    """A character token must not already mean something to the tokenizer."""
    ids = tokenizer(token, add_special_tokens=False).input_ids
    if token in tokenizer.get_vocab() or (len(ids) == 1 and ids[0] != tokenizer.unk_token_id):
        raise UserError(
            f"--token {token!r} is already in the tokenizer's vocabulary; choose a new made-up token such as '<{token.strip('<>')}1>'"
        )


class CharacterTokens:
    """Placeholder tokens in the prompt, each resolved per timestep to its TimeInv table row.

    `encode(prompts, timestep)` returns the text encoder's last hidden state with every character
    token's input embedding replaced by its table row for that timestep. Without gradient the result
    is cached per combination of buckets, so a 50-step generation with B = 1000 still runs the text
    encoder only once per distinct bucket.
    """

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.tables: dict[int, TimeInvTable] = {}  # added token id -> table
        self.tokens: dict[str, int] = {}  # token text -> added token id
        self._stand_in_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        self._swap: tuple[torch.Tensor, torch.Tensor] | None = None  # (mask, rows) for the running call
        self._cache: dict[tuple, torch.Tensor] = {}
        text_encoder.get_input_embeddings().register_forward_hook(self._swap_in_rows)

    def add(self, token: str, table: TimeInvTable) -> None:
        check_new_token(self.tokenizer, token)
        self.tokenizer.add_tokens([token])
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        self.tokens[token] = token_id
        self.tables[token_id] = table
        self._cache.clear()

    def buckets(self, timestep: int) -> tuple[int, ...]:
        return tuple(table.bucket(timestep) for table in self.tables.values())

    def encode(self, prompts: list[str], timestep: int) -> torch.Tensor:
        key = (tuple(prompts), self.buckets(timestep))
        if not torch.is_grad_enabled() and key in self._cache:
            return self._cache[key]
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.text_encoder.device)
        embedding = self.text_encoder.get_input_embeddings()
        mask = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        rows = torch.zeros(*ids.shape, embedding.embedding_dim, device=ids.device)
        for token_id, table in self.tables.items():
            here = ids == token_id
            if here.any():
                mask |= here
                rows = torch.where(here[..., None], table(timestep).to(rows.device), rows)
        # Added ids are past the embedding table; any valid id works as a stand-in since its row is replaced.
        ids = torch.where(mask, torch.full_like(ids, self._stand_in_id), ids)
        self._swap = (mask, rows)
        try:
            hidden = self.text_encoder(ids)[0]
        finally:
            self._swap = None
        if not torch.is_grad_enabled():
            self._cache[key] = hidden
        return hidden

    def _swap_in_rows(self, module, inputs, output):
        if self._swap is None or not self._swap[0].any():
            return output
        mask, rows = self._swap
        return torch.where(mask[..., None], rows.to(output.dtype), output)


# ---------------------------------------------------------------------------------------------------
# LoRA on the spatial attention of the UNet
# ---------------------------------------------------------------------------------------------------


def adapter_name_for(token: str) -> str:
    """peft adapter names become module keys: letters, digits and underscores only."""
    return "char_" + (re.sub(r"[^0-9A-Za-z]+", "_", token).strip("_") or "token")


def add_spatial_lora(unet, adapter_name: str, rank: int, alpha: float | None = None) -> None:
    """A new LoRA adapter on the spatial attention projections; base weights stay frozen."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights="gaussian", target_modules=SPATIAL_LORA_TARGETS
    )
    with warnings.catch_warnings():
        # One adapter per character is the design; peft warns about every adapter after the first.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        unet.add_adapter(config, adapter_name=adapter_name)


def lora_parameters(unet, adapter_name: str) -> list[nn.Parameter]:
    return [p for name, p in unet.named_parameters() if f".{adapter_name}." in name and ".lora_" in name]


def lora_state_dict(unet, adapter_name: str) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(unet, adapter_name=adapter_name).items()}


def load_lora_state_dict(unet, adapter_name: str, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise UserError(f"character pack LoRA does not fit this UNet ({len(unexpected)} unknown layers, e.g. {unexpected[0]})")


def set_lora_scales(unet, scales: dict[str, float]) -> None:
    """Activate exactly these adapters, each at its own scale (0 = adapter has no effect)."""
    from peft.tuners.lora import LoraLayer

    for module in unet.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter(list(scales))
            for name, scale in scales.items():
                module.set_scale(name, scale)


# ---------------------------------------------------------------------------------------------------
# Pack file
# ---------------------------------------------------------------------------------------------------


@dataclass
class CharacterPack:
    token: str
    init_word: str
    mode: str  # "timeinv" or "ti"
    table: torch.Tensor  # (B, d) float32
    num_train_timesteps: int
    lora: dict[str, torch.Tensor]  # peft state dict (adapter name stripped)
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

    `models` is a `generation.components.Components` or a `StructureGuidedSampler` (anything with
    tokenizer, text_encoder, unet and ids). Its UNet gains one LoRA adapter per pack at `lora_scale`.
    """
    tokens = CharacterTokens(models.tokenizer, models.text_encoder)
    scales = {}
    for path in paths:
        pack = load_pack(path)
        check_base_model(pack, models.ids, path)
        if pack.token in tokens.tokens:
            raise UserError(f"character pack {path} uses token {pack.token!r}, already taken by another --character pack")
        tokens.add(pack.token, pack.make_table())
        name = adapter_name_for(pack.token)
        add_spatial_lora(models.unet, name, pack.lora_rank, pack.lora_alpha)
        load_lora_state_dict(models.unet, name, pack.lora)
        scales[name] = lora_scale
    if scales:
        set_lora_scales(models.unet, scales)
        models.unet.requires_grad_(False)
    return tokens


class CharacterConditioning:
    """The sampler's per-step text hook (`text_conditioning`) for a prompt with character tokens.

    Returns rows [negative, positive] at each step, with every token's embedding taken from its
    table row for that step's timestep; cached per bucket, so the text encoder runs only when a
    bucket changes.
    """

    def __init__(self, tokens: CharacterTokens, prompt: str, negative_prompt: str, unet):
        self.tokens, self.prompts, self.unet = tokens, [negative_prompt, prompt], unet

    def __call__(self, step_index: int, timestep: int) -> torch.Tensor:
        with torch.no_grad():
            return self.tokens.encode(self.prompts, timestep).to(self.unet.device, self.unet.dtype)


def character_conditioning(sampler, pack_paths, prompt: str, negative_prompt: str = "",
                           lora_scale: float = 1.0) -> CharacterConditioning | None:
    """Load the packs into `sampler` and return its `text_conditioning` for `prompt` (None without packs)."""
    if not pack_paths:
        return None
    tokens = load_characters(sampler, pack_paths, lora_scale)
    return CharacterConditioning(tokens, prompt, negative_prompt, sampler.unet)
