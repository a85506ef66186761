"""Write an SD1.x diffusers folder as one original-layout (LDM) checkpoint, as ComfyUI and A1111 keep
models: the `--base FILE.safetensors` path of generation/components.py is tested on the tiny
base model written this way, read back through diffusers' own converter (`from_single_file`).

The renaming is the inverse of that converter's, for any block layout (the UNet config says how many
layers each block has): LDM numbers the UNet's input/output blocks consecutively and calls the VAE's
levels down.N/up.N (up counted from the bottom), its attention q/k/v/proj_out 1x1 convolutions.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def unet_to_ldm(state: dict, config: dict) -> dict:
    """diffusers UNet2DConditionModel weights -> `model.diffusion_model.*` (LDM UNetModel names)."""
    layers = config["layers_per_block"]
    names = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "mid_block.attentions.0": "middle_block.1"}
    for j in range(2):
        names[f"mid_block.resnets.{j}"] = f"middle_block.{2 * j}"
    for i in range(len(config["down_block_types"])):
        for j in range(layers):
            block = 1 + i * (layers + 1) + j
            names[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{block}.0"
            names[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{block}.1"
        names[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op"
    for i, kind in enumerate(config["up_block_types"]):
        for j in range(layers + 1):
            block = i * (layers + 1) + j
            names[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{block}.0"
            names[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{block}.1"
        last = i * (layers + 1) + layers
        names[f"up_blocks.{i}.upsamplers.0"] = f"output_blocks.{last}.{2 if 'CrossAttn' in kind else 1}"
    out = {}
    for key, value in state.items():
        prefix = max((p for p in names if key.startswith(p + ".")), key=len)
        rest = key[len(prefix) + 1:]
        if ".resnets." in prefix:
            for old, new in RESNET:
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
        out[f"model.diffusion_model.{names[prefix]}.{rest}"] = value
    return out


def vae_to_ldm(state: dict, levels: int) -> dict:
    """diffusers AutoencoderKL weights -> `first_stage_model.*` (LDM AutoencoderKL names)."""
    out = {}
    for key, value in state.items():
        new = key
        for i in range(levels):
            new = new.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            new = new.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            new = new.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block.")
            new = new.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        for j in range(2):
            new = new.replace(f"mid_block.resnets.{j}.", f"mid.block_{j + 1}.")
        new = new.replace("mid_block.attentions.0.", "mid.attn_1.").replace("conv_norm_out", "norm_out")
        new = new.replace("conv_shortcut", "nin_shortcut")
        if "mid.attn_1." in new:
            for old, ldm in VAE_ATTENTION:
                new = new.replace(f"mid.attn_1.{old}.", f"mid.attn_1.{ldm}.")
            if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out[f"first_stage_model.{new}"] = value
    return out


def write_single_file(base_dir, path) -> Path:
    """Save the SD1.x diffusers folder `base_dir` (unet/, vae/, text_encoder/) as one LDM-layout .safetensors."""
    from safetensors.torch import load_file, save_file

    base_dir, path = Path(base_dir), Path(path)
    unet_config = json.loads((base_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((base_dir / "vae" / "config.json").read_text())
    state = unet_to_ldm(load_file(base_dir / "unet" / "diffusion_pytorch_model.safetensors"), unet_config)
    state |= vae_to_ldm(load_file(base_dir / "vae" / "diffusion_pytorch_model.safetensors"),
                        len(vae_config["block_out_channels"]))
    text = load_file(base_dir / "text_encoder" / "model.safetensors")
    state |= {f"cond_stage_model.transformer.{key}": value for key, value in text.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Every parameter of `a` equals `b`'s of the same name."""
    other = dict(b.state_dict())
    return all(torch.equal(value, other[name]) for name, value in a.state_dict().items())
