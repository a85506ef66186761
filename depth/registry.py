"""Depth model registry: every supported MiDaS/DPT model as data (timm `create_model(name)` style).

An entry names the timm backbone (built from the installed timm with `pretrained=False`; weights
always come from a MiDaS checkpoint), the hook layers the decoder taps, the channels of the four
reassembled levels, the network input size and where the official checkpoint lives in the
Hugging Face cache. Hook layers and channels are those of the official MiDaS release.

Any other name is a transformers depth-estimation model (`AutoModelForDepthEstimation`: DPT, Depth
Anything V2, ...): a local folder written by `save_pretrained`, or a repo id in the Hugging Face cache.
`transformers_config` describes it with the same fields (kind "transformers"; its input size,
mean/std and size multiple from its image processor's config); depth/model.py loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # input normalization (MiDaS DPT: 0.5 / 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    multiple: int = 32                           # network input sides are multiples of this
    keep_aspect: bool = True                     # False: inputs are resized to input_size x input_size
    folder: str | None = None                    # transformers models: the folder the weights load from

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
    """A registry model, or a transformers depth model (a folder, or an ORG/NAME repo in the HF cache)."""
    if name in MODELS:
        return MODELS[name]
    if "/" in name or Path(name).is_dir():
        return transformers_config(name)
    raise UserError(f"unknown depth model {name!r} (--depth-model); choose one of {', '.join(MODELS)}, or give "
                    "a transformers depth-estimation model folder or repo id "
                    "(e.g. depth-anything/Depth-Anything-V2-Small-hf)")


# What a transformers depth model needs from its repo (`hf download REPO --include ...`).
TRANSFORMERS_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")


def transformers_config(name: str) -> DepthModelConfig:
    """The registry entry of a transformers depth model: a local folder or a repo in the HF cache.

    Input size, mean/std and multiple come from its `preprocessor_config.json` (DPTImageProcessor /
    Depth Anything fields); without one (a bare `save_pretrained` of the model), from its config:
    the backbone's image size and patch size, MiDaS' 0.5 normalization.
    """
    import json

    folder = Path(name)
    if not folder.is_dir():
        from storyreel.core.hub import hf_folder

        folder = hf_folder(name, f"depth model {name}", TRANSFORMERS_FILES)
    if not (folder / "config.json").is_file():
        raise UserError(f"depth model folder {folder} has no config.json; expected a transformers model saved "
                        "with save_pretrained (AutoModelForDepthEstimation)")
    config = json.loads((folder / "config.json").read_text())
    backbone = config.get("backbone_config") or {}
    processor_file = folder / "preprocessor_config.json"
    processor = json.loads(processor_file.read_text()) if processor_file.is_file() else {}
    size = processor.get("size") or {}
    side = size.get("height") if isinstance(size, dict) else size
    side = side or config.get("image_size") or backbone.get("image_size") or 384
    patch = config.get("patch_size") or backbone.get("patch_size") or 16
    multiple = processor.get("ensure_multiple_of") or patch
    # transformers' plain-ViT DPT reshapes its tokens to a square grid: its processor squashes frames to
    # a square; backbone models (Depth Anything's DINOv2) keep the aspect ratio.
    keep_aspect = bool(processor.get("keep_aspect_ratio", bool(backbone)))
    mean = tuple(processor.get("image_mean") or (0.5,) * 3)
    std = tuple(processor.get("image_std") or (0.5,) * 3)
    return DepthModelConfig(
        name=name, backbone=(config.get("architectures") or ["AutoModelForDepthEstimation"])[0], kind="transformers",
        hooks=(0, 0, 0, 0), level_channels=(0, 0, 0, 0), input_size=int(side), mean=mean, std=std,
        multiple=int(multiple), keep_aspect=keep_aspect, folder=str(folder.resolve()))


def model_for_preset(preset) -> str:
    """Depth model name a preset uses (`tiny` -> "tiny", `default` -> "dpt_hybrid_384"); see storyreel.core.models."""
    from storyreel.core.models import get_preset

    return get_preset(preset).depth
