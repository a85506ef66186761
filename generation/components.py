"""The diffusion components of a generation preset: configs as data, one loader for every preset.

A preset names three diffusers-format folders (the SD1.5 layout `unet/ vae/ text_encoder/ tokenizer/
scheduler/`, an AnimateDiff `MotionAdapter`, a depth `ControlNetModel`) plus the sampling defaults that
suit them. `default` finds the public pretrained weights in the Hugging Face cache (never the network);
`tiny` builds small random-init models in code with a fixed seed and writes them in the same on-disk
layout, so every preset (and every test) goes through the one loader the real weights use.

    components = create_components("tiny")          # or "default" (pretrained, HF cache only)
    folders = write_tiny_checkpoint(folder)         # base/, motion_adapter/, controlnet/
    components = load_components(**folders)
"""

from __future__ import annotations

import contextlib
import gzip
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from storyreel.core.errors import UserError


@dataclass(frozen=True)
class GenerationPreset:
    """Where a preset's weights come from and the sampling defaults that suit them."""

    name: str
    base: str  # SD1.5-layout repo: unet, vae, text_encoder, tokenizer, scheduler
    motion_adapter: str  # AnimateDiff MotionAdapter repo
    controlnet: str  # depth ControlNet repo
    height: int
    width: int
    frames: int
    steps: int
    cfg: float
    train_size: int  # square resolution of character training (`character train --size`)


PRESETS: dict[str, GenerationPreset] = {
    "default": GenerationPreset(
        name="default",
        base="stable-diffusion-v1-5/stable-diffusion-v1-5",
        motion_adapter="guoyww/animatediff-motion-adapter-v1-5-3",
        controlnet="lllyasviel/control_v11f1p_sd15_depth",
        height=512, width=512, frames=16, steps=25, cfg=7.5, train_size=256,
    ),
    # Ids of the tiny preset are labels, not repos: the models are built by `build_tiny_components`.
    "tiny": GenerationPreset(
        name="tiny",
        base="storyreel/tiny-sd15(seed=0)",
        motion_adapter="storyreel/tiny-motion-adapter(seed=0)",
        controlnet="storyreel/tiny-controlnet-depth(seed=0)",
        height=64, width=64, frames=16, steps=4, cfg=7.5, train_size=64,
    ),
}


@dataclass
class Components:
    """Everything the sampler needs; `ids` says where each piece came from (recorded in outputs)."""

    unet: torch.nn.Module  # diffusers UNetMotionModel (SD1.5 UNet + AnimateDiff motion modules)
    controlnet: torch.nn.Module  # diffusers ControlNetModel (depth)
    vae: torch.nn.Module  # diffusers AutoencoderKL
    text_encoder: torch.nn.Module  # transformers CLIPTextModel
    tokenizer: object  # transformers CLIPTokenizer
    scheduler: object  # any diffusers scheduler (DDIM by default)
    ids: dict[str, str] = field(default_factory=dict)


def generation_preset(name: str) -> GenerationPreset:
    if name not in PRESETS:
        raise UserError(f"unknown generation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def create_components(preset: str, *, dtype: torch.dtype = torch.float32) -> Components:
    """The preset's components: `tiny` built in code, `default` from the Hugging Face cache."""
    spec = generation_preset(preset)
    ids = {"base": spec.base, "motion_adapter": spec.motion_adapter, "controlnet": spec.controlnet}
    if spec.name == "tiny":
        # Through disk on purpose: the tiny models take the same loader as the pretrained ones.
        with tempfile.TemporaryDirectory(prefix="storyreel-tiny-") as folder, _quiet_libraries():
            return load_components(**write_tiny_checkpoint(folder), ids=ids, dtype=dtype)
    from storyreel.core.hub import hf_folder

    return load_components(
        hf_folder(spec.base, "the Stable Diffusion 1.5 base model"),
        hf_folder(spec.motion_adapter, "the AnimateDiff motion adapter"),
        hf_folder(spec.controlnet, "the depth ControlNet"),
        ids=ids, dtype=dtype,
    )


def load_components(base_dir, motion_adapter_dir, controlnet_dir, *, ids: dict[str, str] | None = None,
                    dtype: torch.dtype = torch.float32) -> Components:
    """Read diffusers-format folders (SD1.5 layout base, MotionAdapter, ControlNet) into `Components`."""
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel,
                           UNetMotionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    base_dir, motion_adapter_dir, controlnet_dir = Path(base_dir), Path(motion_adapter_dir), Path(controlnet_dir)
    for folder in (base_dir / "unet", base_dir / "vae", base_dir / "text_encoder", base_dir / "tokenizer",
                   base_dir / "scheduler", motion_adapter_dir, controlnet_dir):
        if not folder.is_dir():
            raise UserError(f"model folder {folder} is missing; expected a diffusers-format checkpoint there")
    with _quiet_libraries():
        unet2d = UNet2DConditionModel.from_pretrained(base_dir / "unet", torch_dtype=dtype)
        motion_adapter = MotionAdapter.from_pretrained(motion_adapter_dir, torch_dtype=dtype)
        unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter).to(dtype)
        del unet2d, motion_adapter
        # AnimateDiff samples with DDIM on the linear beta schedule (the SD1.5 folder ships PNDM settings).
        scheduler = DDIMScheduler.from_pretrained(
            base_dir / "scheduler", beta_schedule="linear", clip_sample=False, timestep_spacing="linspace",
            steps_offset=1,
        )
        components = Components(
            unet=unet,
            controlnet=ControlNetModel.from_pretrained(controlnet_dir, torch_dtype=dtype),
            vae=AutoencoderKL.from_pretrained(base_dir / "vae", torch_dtype=dtype),
            text_encoder=CLIPTextModel.from_pretrained(base_dir / "text_encoder", torch_dtype=dtype),
            tokenizer=CLIPTokenizer.from_pretrained(base_dir / "tokenizer"),
            scheduler=scheduler,
            ids=dict(ids or {"base": str(base_dir), "motion_adapter": str(motion_adapter_dir),
                             "controlnet": str(controlnet_dir)}),
        )
    for module in (components.unet, components.controlnet, components.vae, components.text_encoder):
        module.eval().requires_grad_(False)
    return components


@contextlib.contextmanager
def _quiet_libraries():
    """Silence diffusers/transformers info lines and progress bars while loading (stderr is ours)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        for library in (diffusers_logging, transformers_logging):
            library.enable_progress_bar()


# ---------------------------------------------------------------------------------------------- tiny

TINY_SEED = 0


def write_tiny_checkpoint(folder) -> dict[str, Path]:
    """Build the tiny preset's random-init models (fixed seed) and save them in the pretrained layout.

    Shapes follow diffusers' own tests; the VAE has four levels so, as in SD1.5, latents are 1/8 of
    the image size; the tokenizer is CLIP's real BPE vocabulary (bundled with open_clip), so prompts
    tokenize as in SD1.5. Returns the `load_components` arguments.
    """
    from diffusers import DDIMScheduler

    folder = Path(folder)
    base = folder / "base"
    channels, cross_dim = (16, 32), 32
    with torch.random.fork_rng():  # seed every model without disturbing the caller's RNG
        _write_tiny_models(folder, base, channels, cross_dim)
    offline_clip_tokenizer().save_pretrained(base / "tokenizer")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear").save_pretrained(base / "scheduler")
    return {"base_dir": base, "motion_adapter_dir": folder / "motion_adapter", "controlnet_dir": folder / "controlnet"}


def _write_tiny_models(folder: Path, base: Path, channels: tuple[int, int], cross_dim: int) -> None:
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(TINY_SEED)
    UNet2DConditionModel(
        block_out_channels=channels, layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=2,
    ).save_pretrained(base / "unet")
    torch.manual_seed(TINY_SEED)
    MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=2, motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    ).save_pretrained(folder / "motion_adapter")
    torch.manual_seed(TINY_SEED)
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
    torch.manual_seed(TINY_SEED)
    AutoencoderKL(
        block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).save_pretrained(base / "vae")
    torch.manual_seed(TINY_SEED)
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


def random_sd15_components(seed: int = 0) -> Components:
    """BENCH-ONLY: full-size SD1.5-architecture models at random init (speed and memory do not depend
    on weights). Never a generation preset: `scripts/bench_generate.py` and `scripts/bench_train.py` use it.

    UNet (the SD1.5 unet/config.json values) + AnimateDiff v1.5 motion modules, a ControlNet made from
    that UNet (the ControlNet v1.1 layout), the SD1.5 VAE and CLIP ViT-L/14 text encoder, and the DDIM
    schedule `load_components` gives the pretrained weights.
    """
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel,
                           UNetMotionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

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
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              timestep_spacing="linspace", steps_offset=1)
    for module in (unet, controlnet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return Components(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder,
                      tokenizer=offline_clip_tokenizer(), scheduler=scheduler,
                      ids={"base": "sd15-architecture(random)", "motion_adapter": "motion-adapter-v1.5(random)",
                           "controlnet": "controlnet-from-unet(random)"})
