"""CLIP image/text embedders for a preset's CLIP (storyreel.core.models): `load_clip(preset)`.

Every CLIP is built the same way: make the open_clip architecture (a named one, an `hf-hub:`
repo's or a local folder's config, or an explicit config) at random init, then, for pretrained ones, load an open_clip
checkpoint file from the Hugging Face cache with `open_clip.load_checkpoint`. The image
preprocessing (size, mean/std, resize mode, interpolation) and the tokenizer are the ones open_clip
gives that model; the tiny preset's test saves its state dict as such a file and loads it back
through that same path.

Embedding runs in batches on the device storyreel.core.devices picks (CUDA when present), in fp16
there: preprocessing happens on the device too, so only uint8 frames cross the bus.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from storyreel.core.hub import hf_file
from storyreel.core.models import (
    HF_HUB,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    ClipSpec,
    ModelPreset,
    get_preset,
    local_checkpoint,
)


class ClipEmbedder:
    """A CLIP model and its tokenizer: uint8 frames / strings → L2-normalized float32 vectors."""

    def __init__(self, model, tokenizer, model_id: str, batch_size: int = 64, device=None, dtype=None):
        import open_clip
        import torch
        from open_clip.transform import PreprocessCfg

        from storyreel.core.devices import pick_device, pick_dtype

        self.device = device = pick_device(device) if device is None or isinstance(device, str) else device
        self.dtype = dtype or pick_dtype(None, device)
        self.model = model.eval().to(device=device, dtype=self.dtype)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else None
        # What open_clip's own eval transform would do for this model (its defaults fill the gaps).
        cfg = {**asdict(PreprocessCfg()), **open_clip.get_model_preprocess_cfg(model)}
        size = cfg["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)  # (height, width)
        self.resize_mode = cfg["resize_mode"]  # shortest: crop to fill; longest: pad to fit; squash: stretch
        # open_clip's "random" interpolation is a training augmentation; inference uses bicubic.
        self.interpolation = "bilinear" if cfg["interpolation"] == "bilinear" else "bicubic"
        self.fill = cfg["fill_color"] / 255.0
        self._mean, self._std = (torch.tensor(_rgb(cfg[k]), device=device).view(1, 3, 1, 1) for k in ("mean", "std"))

    def preprocess(self, frames: np.ndarray):
        """uint8 (N,H,W,3) → normalized float tensor (N,3,S,S), batched: open_clip's eval transform on tensors."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self._mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        (h, w), (th, tw) = x.shape[-2:], self.image_size
        if self.resize_mode == "squash":
            nh, nw = th, tw
        elif self.resize_mode == "longest":
            scale = min(th / h, tw / w)
            nh, nw = round(h * scale), round(w * scale)
        else:  # shortest
            scale = max(th / h, tw / w)
            nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, antialias=True, align_corners=False)
        x = _crop_or_pad(x, th, tw, self.fill).clamp_(0, 1)
        return ((x - self._mean) / self._std).to(self.dtype)

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"embed_images wants uint8 (N,H,W,3) frames, got {frames.dtype} {frames.shape}")
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                feats = self.model.encode_image(self.preprocess(frames[i:i + self.batch_size]))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
            return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()


def _rgb(value) -> tuple[float, float, float]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


def _crop_or_pad(x, height: int, width: int, fill: float):
    """Center crop (N,3,h,w) to height x width, first padding with `fill` where it is smaller."""
    import torch.nn.functional as F

    pad_h, pad_w = max(height - x.shape[-2], 0), max(width - x.shape[-1], 0)
    if pad_h or pad_w:
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[:, :, top:top + height, left:left + width]


def create_clip_model(spec: ClipSpec, hub_folder: Path | None = None):
    """The open_clip architecture of `spec`, randomly initialized with the spec's seed.

    `hub_folder`: the folder with the spec's open_clip_config.json (an `hf-hub:` spec's cached snapshot,
    a `local-dir:` spec's folder).
    """
    import open_clip
    import torch

    torch.manual_seed(spec.seed)
    if spec.config is not None:
        return open_clip.CLIP(**spec.config)
    if hub_folder is not None:
        with _no_random_init_warning():  # the checkpoint is loaded right after (clip_embedder)
            return open_clip.create_model(f"local-dir:{hub_folder}", load_weights=False)
    # A pretrained tag brings its own preprocessing (mean/std, resize mode), as open_clip applies it.
    tag = open_clip.get_pretrained_cfg(spec.architecture, spec.pretrained) if spec.pretrained else {}
    preprocess = {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}
    return open_clip.create_model(spec.architecture, pretrained=None, force_preprocess_cfg=preprocess)


@contextlib.contextmanager
def _no_random_init_warning():
    """Drop open_clip's "No pretrained weights loaded ... initialized randomly" warning (root logger)."""
    def keep(record):
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def clip_tokenizer(spec: ClipSpec, hub_folder: Path | None = None):
    """open_clip's tokenizer for the spec's architecture (CLIP's BPE ships inside open_clip, works offline)."""
    import open_clip

    if spec.config is not None:
        context_length = spec.config.get("text_cfg", {}).get("context_length", 77)
        return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    return open_clip.get_tokenizer(f"local-dir:{hub_folder}" if hub_folder is not None else spec.architecture)


def load_checkpoint_into(model, checkpoint: str | Path):
    """Load an open_clip checkpoint file (.safetensors or .bin) into `model` — the pretrained path."""
    import open_clip

    open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    return model


def find_checkpoint(spec: ClipSpec) -> Path:
    """The spec's open_clip checkpoint file in the HF cache (first found), else MissingWeightsError for the first."""
    from storyreel.core.errors import MissingWeightsError

    first_error = None
    for name in OPEN_CLIP_WEIGHTS:
        try:
            return hf_file(spec.weights_repo, name, what=f"CLIP {spec.model_id}")
        except MissingWeightsError as err:
            first_error = first_error or err
    raise first_error


def clip_embedder(spec: ClipSpec, checkpoint: str | Path | None = None, device=None, dtype=None) -> ClipEmbedder:
    """The embedder of one CLIP spec. `checkpoint` overrides where weights come from; `device`/`dtype`:
    storyreel.core.devices' defaults when None."""
    hub_folder = None
    if spec.architecture.startswith(HF_HUB):
        hub_folder = hf_file(spec.weights_repo, OPEN_CLIP_CONFIG, what=f"CLIP {spec.model_id}").parent
    elif spec.local_folder is not None:
        hub_folder = spec.local_folder
        checkpoint = checkpoint if checkpoint is not None else local_checkpoint(hub_folder)
    if checkpoint is None and spec.weights_repo is not None:
        checkpoint = find_checkpoint(spec)  # before building the model: a missing file fails fast
    model = create_clip_model(spec, hub_folder)
    if checkpoint is not None:
        load_checkpoint_into(model, checkpoint)
    return ClipEmbedder(model, clip_tokenizer(spec, hub_folder), spec.model_id, device=device, dtype=dtype)


def load_clip(preset: str | ModelPreset, checkpoint: str | Path | None = None, device=None, dtype=None) -> ClipEmbedder:
    """The CLIP embedder of a preset (`tiny`, `default`). `checkpoint` overrides where weights come from."""
    return clip_embedder(get_preset(preset).clip, checkpoint, device=device, dtype=dtype)


def clip_for_index(model_id: str, preset=None, clip=None, device=None, dtype=None) -> ClipEmbedder:
    """The CLIP to query an index with: `clip` (a --clip value) if given, else `preset`'s if given, else
    the model the index recorded (`model_id`)."""
    from storyreel.core.models import clip_for_model_id, with_overrides

    if clip is not None or preset is not None:
        return clip_embedder(with_overrides(preset, clip=clip).clip, device=device, dtype=dtype)
    return clip_embedder(clip_for_model_id(model_id), device=device, dtype=dtype)
