"""Benchmark-only model builders: full-size architectures at random init (never a preset's weights),
since speed and memory do not depend on weight values. The tiny preset's builders are in tiny.py.
"""

from __future__ import annotations

import torch

from storyreel.core.models import ANIMATEDIFF_DDIM, ClipSpec
from storyreel.generation.tiny import offline_clip_tokenizer

# Full-size ViT-B-32 at random init: `scripts/bench_index.py` (pass to `storyreel.index.embed.clip_embedder`).
BENCH_ONLY_MODELS: dict[str, ClipSpec] = {"vit-b-32-random": ClipSpec("ViT-B-32", seed=0)}


def create_random_depth_model(name: str, seed: int = 0, device=None):
    """Any registered depth architecture with random weights (fixed seed): `scripts/bench_depth.py`."""
    from storyreel.depth.model import DepthModel, random_dpt
    from storyreel.depth.registry import get_config

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return DepthModel(random_dpt(get_config(name), seed), model_id=f"{name}-random-seed{seed}", device=device)


def random_sd15_components(seed: int = 0, backend: str = "animatediff"):
    """BENCH-ONLY `Components`: full-size SD1.5-architecture models at random init (speed and memory do
    not depend on weights). Never a generation preset: `scripts/bench_generate.py` and `scripts/bench_train.py` use it.

    UNet (the SD1.5 unet/config.json values) + AnimateDiff v1.5 motion modules, a ControlNet made from
    that UNet (the ControlNet v1.1 layout), the SD1.5 VAE and CLIP ViT-L/14 text encoder, and the DDIM
    schedule `load_components` gives the pretrained weights. backend "t2v-zero": the image UNet alone
    (the same weights, no motion modules), as `create_components` loads it for Text2Video-Zero.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
        UNetMotionModel,
    )
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
    unet = UNetMotionModel.from_unet2d(unet2d, MotionAdapter()) if backend == "animatediff" else unet2d
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
