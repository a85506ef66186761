"""CLIP image/text embedders, registered as data (open_clip style: `load_clip(preset)`).

Every preset is built the same way: make the open_clip architecture, then (for pretrained presets)
load an open_clip checkpoint file with `open_clip.load_checkpoint`. The tiny preset's test saves its
state dict as such a file and loads it back through that same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.hub import hf_file


@dataclass(frozen=True)
class ClipSpec:
    """One CLIP preset: an open_clip architecture plus where its weights come from."""

    model_id: str                 # stored in the index; queries must use the same model
    architecture: str | dict      # open_clip model name, or an explicit CLIP config (tiny)
    hf_repo: str | None = None    # pretrained weights in the HF cache (None: random init with `seed`)
    hf_files: tuple[str, ...] = ()  # checkpoint file names, first found wins (open_clip's own order)
    seed: int = 0


TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

CLIP_MODELS: dict[str, ClipSpec] = {
    "tiny": ClipSpec(model_id="open_clip:tiny:seed0", architecture=TINY_CLIP_CONFIG, seed=0),
    "default": ClipSpec(
        model_id="open_clip:ViT-B-32:laion2b_s34b_b79k",
        architecture="ViT-B-32",
        hf_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        # open_clip prefers the safetensors file and falls back to the pickle.
        hf_files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
    ),
}

# Only for speed benchmarks: full-size ViT-B-32 at random init (speed does not depend on weights).
BENCH_ONLY_MODELS: dict[str, ClipSpec] = {
    "vit-b-32-random": ClipSpec(model_id="open_clip:ViT-B-32:random-init", architecture="ViT-B-32", seed=0),
}

# CLIP's image normalization (the same for every open_clip OpenAI/LAION ViT).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipEmbedder:
    """A CLIP model and its tokenizer: uint8 frames / strings → L2-normalized float32 vectors."""

    def __init__(self, model, tokenizer, model_id: str, image_size: int, batch_size: int = 64):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.image_size = image_size
        self.batch_size = batch_size
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else None
        self._mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray):
        """uint8 (N,H,W,3) → normalized float tensor (N,3,S,S): resize the short side to S, center crop."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        s = self.image_size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[:, :, top:top + s, left:left + s].clamp_(0, 1)
        return (x - self._mean) / self._std

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"embed_images wants uint8 (N,H,W,3) frames, got {frames.dtype} {frames.shape}")
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                feats = self.model.encode_image(self.preprocess(frames[i:i + self.batch_size]))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)))
            return torch.nn.functional.normalize(feats.float(), dim=-1).numpy()


def create_clip_model(spec: ClipSpec):
    """The open_clip architecture of `spec`, randomly initialized with the spec's seed."""
    import open_clip
    import torch

    torch.manual_seed(spec.seed)
    if isinstance(spec.architecture, dict):
        return open_clip.CLIP(**spec.architecture)
    return open_clip.create_model(spec.architecture, pretrained=None)


def load_checkpoint_into(model, checkpoint: str | Path):
    """Load an open_clip checkpoint file (.safetensors or .bin) into `model` — the pretrained path."""
    import open_clip

    open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    return model


def find_checkpoint(spec: ClipSpec) -> Path:
    """The first of the spec's checkpoint files found in the HF cache, else MissingWeightsError for the first."""
    from storyreel.core.errors import MissingWeightsError

    first_error = None
    for name in spec.hf_files:
        try:
            return hf_file(spec.hf_repo, name, what=f"CLIP {spec.model_id}")
        except MissingWeightsError as err:
            first_error = first_error or err
    raise first_error


def embedder_from(model, spec: ClipSpec) -> ClipEmbedder:
    import open_clip

    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    # Every preset uses CLIP's BPE tokenizer (ships inside open_clip, works offline).
    return ClipEmbedder(model, open_clip.get_tokenizer("ViT-B-32"), spec.model_id, image_size)


def load_clip(preset: str, checkpoint: str | Path | None = None) -> ClipEmbedder:
    """The CLIP embedder of a preset (`tiny`, `default`). `checkpoint` overrides where weights come from."""
    spec = CLIP_MODELS.get(preset) or BENCH_ONLY_MODELS.get(preset)
    if spec is None:
        raise UserError(f"unknown CLIP preset {preset!r}; choose one of {', '.join(CLIP_MODELS)}")
    if checkpoint is None and spec.hf_repo is not None:
        checkpoint = find_checkpoint(spec)  # before building the model: a missing file fails fast
    model = create_clip_model(spec)
    if checkpoint is not None:
        load_checkpoint_into(model, checkpoint)
    return embedder_from(model, spec)
