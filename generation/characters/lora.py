"""LoRA on the UNet's *spatial* attention only (Animate-A-Story's character LoRA).

The q/k/v/out projections of spatial self- and cross-attention get a peft adapter per character.
The motion modules use the same layer names, so the target pattern keys on the module path
(`attentions.`, never `motion_modules.`). Scales are set with diffusers' adapter API
(`unet.set_adapters` / `pipeline.set_adapters`).
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from storyreel.core.errors import UserError

# The projections of each spatial attention a LoRA may adapt; all four by default (Animate-A-Story's
# paper recipe adapts q, k and v: core/recipes/animate-a-story.json).
LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def spatial_lora_targets(projections=LORA_PROJECTIONS) -> str:
    """peft's target pattern for `projections` of UNetMotionModel's spatial attention
    (`*.attentions.N.transformer_blocks.M.attn1|attn2.*`); the motion modules (`*.motion_modules.*`)
    are deliberately not matched."""
    unknown = set(projections) - set(LORA_PROJECTIONS)
    if unknown or not projections:
        raise UserError(f"LoRA targets must be some of {', '.join(LORA_PROJECTIONS)}, got {list(projections)}")
    names = "|".join(re.escape(p) for p in projections)
    return rf".*\.attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.({names})"


def adapter_name_for(token: str) -> str:
    """peft adapter names become module keys: letters, digits and underscores only."""
    return "char_" + (re.sub(r"[^0-9A-Za-z]+", "_", token).strip("_") or "token")


def add_spatial_lora(unet, adapter_name: str, rank: int, alpha: float | None = None,
                     projections=LORA_PROJECTIONS) -> None:
    """A new LoRA adapter on `projections` of the spatial attention layers; base weights stay frozen."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights="gaussian",
        target_modules=spatial_lora_targets(projections),
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
    """Load a LoRA state dict (as `lora_state_dict` returns) into the adapter: every layer must be there,
    with its shape (peft itself would leave a missing layer at its random init without a word)."""
    from peft.utils import set_peft_model_state_dict

    expected = lora_state_dict(unet, adapter_name)
    missing = sorted(expected.keys() - state.keys())
    if missing:
        raise UserError(f"character pack LoRA does not fit this UNet ({len(missing)} layers missing, "
                        f"e.g. {missing[0]})")
    for key in sorted(expected.keys() & state.keys()):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            raise UserError(f"character pack LoRA does not fit this UNet: {key} has shape {tuple(state[key].shape)}, "
                            f"the UNet needs {tuple(expected[key].shape)}")
    result = set_peft_model_state_dict(unet, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise UserError(f"character pack LoRA does not fit this UNet ({len(unexpected)} unknown layers, "
                        f"e.g. {unexpected[0]})")
