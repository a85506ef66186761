"""Test-only and benchmark-only model builders (never a production preset's weights).

The `tiny` preset's loaders call the tiny builders here (its models are built in code with fixed
seeds and saved in the real on-disk layouts, so they take the same loaders real weights take); the
bench-only builders make full-size architectures at random init, since speed and memory do not
depend on weight values.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from storyreel.core.models import ANIMATEDIFF_DDIM, ClipSpec

# Full-size ViT-B-32 at random init: `scripts/bench_index.py` (pass to `index.embed.clip_embedder`).
BENCH_ONLY_MODELS: dict[str, ClipSpec] = {"vit-b-32-random": ClipSpec("ViT-B-32", seed=0)}


def create_random_depth_model(name: str, seed: int = 0, device=None):
    """Any registered depth architecture with random weights (fixed seed): `scripts/bench_depth.py`."""
    from storyreel.depth.model import DepthModel, random_dpt
    from storyreel.depth.registry import get_config

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return DepthModel(random_dpt(get_config(name), seed), model_id=f"{name}-random-seed{seed}", device=device)


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


def random_sd15_components(seed: int = 0):
    """BENCH-ONLY `Components`: full-size SD1.5-architecture models at random init (speed and memory do
    not depend on weights). Never a generation preset: `scripts/bench_generate.py` and `scripts/bench_train.py` use it.

    UNet (the SD1.5 unet/config.json values) + AnimateDiff v1.5 motion modules, a ControlNet made from
    that UNet (the ControlNet v1.1 layout), the SD1.5 VAE and CLIP ViT-L/14 text encoder, and the DDIM
    schedule `load_components` gives the pretrained weights.
    """
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel,
                           UNetMotionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    from storyreel.generation.components import Components

    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32,
    )
    controlnet = ControlNetModel.from_unet(unet2d, conditioning_embedding_out_channels=(16, 32, 96, 256))
    unet = UNetMotionModel.from_unet2d(unet2d, MotionAdapter())  # AnimateDiff v1.5 adapter shapes
    del unet2d
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, **ANIMATEDIFF_DDIM.config)
    for module in (unet, controlnet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return Components(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder,
                      tokenizer=offline_clip_tokenizer(), scheduler=scheduler,
                      ids={"base": "sd15-architecture(random)", "motion_adapter": "motion-adapter-v1.5(random)",
                           "controlnet": "controlnet-from-unet(random)"})
