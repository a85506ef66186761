"""Personalized characters (Animate-A-Story): a TimeInv token table plus a spatial LoRA, one pack file each.

    tokens = load_characters(pipe, ["teddy.safetensors"])        # token + LoRA adapter per pack
    hook = CharacterConditioning(tokens, "<teddy> walks", "", pipe.unet)
    pipe("<teddy> walks", depth, settings, steering=Steering(text=hook))

Modules: tokens (TimeInv table, the text-encoder hook), lora (spatial-attention adapters), pack
(the safetensors file format and `load_characters`), export (the pack as diffusers/kohya LoRA or TI
files). Training lives in `storyreel.training`.
"""

from storyreel.generation.characters.export import export_pack
from storyreel.generation.characters.lora import adapter_name_for, add_spatial_lora
from storyreel.generation.characters.pack import (
    CharacterPack,
    load_characters,
    load_pack,
    pack_init_word,
    save_pack,
)
from storyreel.generation.characters.tokens import CharacterConditioning, CharacterTokens, TimeInvTable

__all__ = ["CharacterConditioning", "CharacterPack", "CharacterTokens", "TimeInvTable", "adapter_name_for",
           "add_spatial_lora", "export_pack", "load_characters", "load_pack", "pack_init_word", "save_pack"]
