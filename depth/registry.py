"""Depth model registry: every supported MiDaS/DPT model as data (timm `create_model(name)` style).

An entry names the timm backbone (built from the installed timm with `pretrained=False`; weights
always come from a MiDaS checkpoint), the hook layers the decoder taps, the channels of the four
reassembled levels, the network input size and where the official checkpoint lives in the
Hugging Face cache. Hook layers and channels are those of the official MiDaS release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storyreel.core.errors import UserError


@dataclass(frozen=True)
class DepthModelConfig:
    name: str
    backbone: str                      # timm model name (timm 1.x spelling)
    kind: str                          # "vit" | "hybrid" (ResNet stem + ViT) | "beit"
    hooks: tuple[int, int, int, int]   # hybrid: ResNet stages for levels 1-2, ViT blocks for 3-4
    level_channels: tuple[int, int, int, int]
    input_size: int                    # network side; inputs keep aspect, sides multiple of 32
    features: int = 256                # decoder ("scratch") width
    backbone_kwargs: dict = field(default_factory=dict)
    hf_weights: tuple[str, str] | None = None   # (repo id, file name) of the official .pt
    random_init_seed: int | None = None          # set only for `tiny`: random weights are the point

    @property
    def cnn_levels(self) -> int:
        """How many of the four levels come from the ResNet stem instead of transformer blocks."""
        return 2 if self.kind == "hybrid" else 0


MODELS: dict[str, DepthModelConfig] = {
    # MiDaS v3.0 hybrid: what ControlNet-depth and VideoCrafter use. The file name carries the
    # official release hash; lllyasviel/Annotators hosts the unmodified release file.
    "dpt_hybrid_384": DepthModelConfig(
        name="dpt_hybrid_384", backbone="vit_base_r50_s16_384", kind="hybrid",
        hooks=(0, 1, 8, 11), level_channels=(256, 512, 768, 768), input_size=384,
        hf_weights=("lllyasviel/Annotators", "dpt_hybrid-midas-501f0c75.pt"),
    ),
    "dpt_large_384": DepthModelConfig(
        name="dpt_large_384", backbone="vit_large_patch16_384", kind="vit",
        hooks=(5, 11, 17, 23), level_channels=(256, 512, 1024, 1024), input_size=384,
        hf_weights=("deforum/MiDaS", "dpt_large-midas-2f21e586.pt"),
    ),
    # MiDaS v3.1; no Hugging Face mirror of the .pt is known: pass --weights FILE
    # (https://github.com/isl-org/MiDaS/releases/download/v3_1/dpt_beit_large_512.pt).
    "dpt_beit_large_512": DepthModelConfig(
        name="dpt_beit_large_512", backbone="beit_large_patch16_512", kind="beit",
        hooks=(5, 11, 17, 23), level_channels=(256, 512, 1024, 1024), input_size=512,
    ),
    # Small ViT with the same decoder, random init with a fixed seed: tests and smoke runs.
    "tiny": DepthModelConfig(
        name="tiny", backbone="vit_tiny_patch16_224", kind="vit",
        hooks=(0, 1, 2, 3), level_channels=(32, 64, 128, 128), input_size=64, features=32,
        backbone_kwargs=dict(img_size=64, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2.0, num_classes=10),
        random_init_seed=0,
    ),
}


def get_config(name: str) -> DepthModelConfig:
    if name not in MODELS:
        raise UserError(f"unknown depth model {name!r} (--model); choose one of {', '.join(MODELS)}")
    return MODELS[name]


def model_for_preset(preset) -> str:
    """Depth model name a preset uses (`tiny` -> "tiny", `default` -> "dpt_hybrid_384"); see storyreel.core.models."""
    from storyreel.core.models import get_preset

    return get_preset(preset).depth
