"""The `tiny` preset's generator, built in code: small random-init diffusers models with a fixed seed,
saved in the pretrained on-disk layout so they go through the loader real weights use
(generation/components.py). Imports nothing of storyreel but the core, so production code
can call it without a cycle.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch


def write_tiny_checkpoint(folder, seed: int = 0) -> dict[str, Path]:
    """Build the tiny preset's random-init models (with `seed`) and save them in the pretrained layout.

    Shapes follow diffusers' own tests; the VAE has four levels so, as in SD1.5, latents are 1/8 of
    the image size; the tokenizer is CLIP's real BPE vocabulary (bundled with open_clip), so prompts
    tokenize as in SD1.5. Returns the `load_components` arguments.
    """
    from diffusers import DDIMScheduler

    folder = Path(folder)
    base = folder / "base"
    channels, cross_dim = (16, 32), 32
    with torch.random.fork_rng():  # seed every model without disturbing the caller's RNG
        _write_tiny_models(folder, base, channels, cross_dim, seed)
    offline_clip_tokenizer().save_pretrained(base / "tokenizer")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear").save_pretrained(base / "scheduler")
    return {"base_dir": base, "motion_adapter_dir": folder / "motion_adapter", "controlnet_dir": folder / "controlnet"}


def _write_tiny_models(folder: Path, base: Path, channels: tuple[int, int], cross_dim: int, seed: int) -> None:
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    UNet2DConditionModel(
        block_out_channels=channels, layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=2,
    ).save_pretrained(base / "unet")
    torch.manual_seed(seed)
    MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=2, motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    ).save_pretrained(folder / "motion_adapter")
    torch.manual_seed(seed)
    controlnet = ControlNetModel(
        block_out_channels=channels, layers_per_block=2, in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=cross_dim,
        attention_head_dim=8, conditioning_embedding_out_channels=(8, 8, 8, 8), norm_num_groups=2,
    )
    # A fresh ControlNet's output ("zero") convolutions start at zero and its default init fades the
    # depth signal within a few layers, so depth would change nothing. Variance-keeping (He) init on
    # the depth encoder and random output convolutions make the tiny depth branch actually steer.
    for conv in controlnet.controlnet_cond_embedding.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
    for conv in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
        torch.nn.init.normal_(conv.weight, std=0.3)
        torch.nn.init.normal_(conv.bias, std=0.1)
    controlnet.save_pretrained(folder / "controlnet")
    torch.manual_seed(seed)
    AutoencoderKL(
        block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).save_pretrained(base / "vae")
    torch.manual_seed(seed)
    CLIPTextModel(CLIPTextConfig(
        hidden_size=cross_dim, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
        vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )).save_pretrained(base / "text_encoder")


def offline_clip_tokenizer():
    """CLIP's tokenizer from the BPE merges open_clip bundles, built the way CLIP builds its vocab."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # CLIP keeps 48,894 merges
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, model_max_length=77)
