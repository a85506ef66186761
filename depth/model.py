"""`DepthModel`: a DPT network plus the MiDaS transforms, turning RGB frames into inverse depth.

    create_depth_model("dpt_hybrid_384")              official weights from the Hugging Face cache
    create_depth_model("dpt_large_384", weights=pt)   an official MiDaS .pt file on disk
    create_depth_model("tiny")                        random init, fixed seed (tests, smoke runs)
    create_depth_model("depth-anything/Depth-Anything-V2-Small-hf")   any transformers depth model
                                                      (AutoModelForDepthEstimation; repo id or folder)

Transforms (MiDaS "minimal" resize for DPT): keep the aspect ratio, scale by whichever of the two
factors to the network size is closer to 1, round both sides to multiples of 32; bicubic;
RGB/255 normalized with mean = std = 0.5. The prediction is resized back (bicubic) to the frame
size. A frame already at the network size is not resampled, in either direction.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from storyreel.core.errors import UserError
from storyreel.depth.checkpoint import load_official_weights
from storyreel.depth.dpt import DPT
from storyreel.depth.registry import DepthModelConfig, get_config

MULTIPLE = 32


def network_size(height: int, width: int, target: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """Input size the network sees for a `height` x `width` frame (MiDaS "minimal" resize)."""
    scale_h, scale_w = target / height, target / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
    return tuple(max(multiple, int(round(side * scale / multiple)) * multiple) for side in (height, width))


class DepthModel:
    """Relative inverse depth for RGB frames. `predict_calls`/`frames_predicted` count inference."""

    def __init__(self, net: DPT, model_id: str, device: torch.device, dtype: torch.dtype | None = None):
        from storyreel.core.devices import pick_dtype

        self.net = net.eval()
        self.config: DepthModelConfig = net.config
        self.model_id = model_id
        self.device = device
        # fp16 + channels_last is where GPU throughput is; CPUs lack fast fp16 convs, stay fp32.
        self.dtype = dtype or pick_dtype(None, device)
        self.net.to(device=device, dtype=self.dtype)
        if device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
        self.predict_calls = 0
        self.frames_predicted = 0

    def __repr__(self) -> str:
        return f"DepthModel({self.model_id!r}, device={self.device})"

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, batch_size: int = 8, progress=None) -> np.ndarray:
        """uint8 RGB frames (F, H, W, 3) -> float32 relative inverse depth (F, H, W), unnormalized."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames (F, H, W, 3), got {frames.dtype} {frames.shape}")
        if len(frames) == 0:
            raise UserError("no frames to estimate depth for (the source has 0 frames)")
        self.predict_calls += 1
        height, width = frames.shape[1:3]
        side = self.config.input_size
        size = network_size(height, width, side, self.config.multiple) if self.config.keep_aspect else (side, side)
        mean, std = (torch.tensor(v, device=self.device).view(1, 3, 1, 1) for v in (self.config.mean, self.config.std))
        out = np.empty(frames.shape[:3], dtype=np.float32)
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start:start + batch_size]).to(self.device)
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
            x = ((x - mean) / std).to(self.dtype)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            depth = self.net(x).float().unsqueeze(1)
            if depth.shape[-2:] != (height, width):
                depth = F.interpolate(depth, size=(height, width), mode="bicubic", align_corners=False)
            out[start:start + len(batch)] = depth[:, 0].cpu().numpy()
            self.frames_predicted += len(batch)
            if progress is not None:
                progress.update(frames=min(start + batch_size, len(frames)), of=len(frames))
        return out


def _weights_tag(path: Path) -> str:
    """Short identity of a weights file for cache keys (size + mtime; no multi-GB hashing)."""
    stat = os.stat(path)
    return f"{path.stem}-{stat.st_size:x}-{int(stat.st_mtime):x}"


def create_depth_model(name: str = "dpt_hybrid_384", weights: str | Path | None = None, device=None,
                       dtype: torch.dtype | None = None) -> DepthModel:
    """Build a registered depth model with its weights (see module docstring).

    `weights`: an official MiDaS `.pt` file; without it the registry's Hugging Face file is used
    (a MissingWeightsError names it if absent). Only `tiny` runs on random weights. `device`/`dtype`:
    storyreel.core.devices' defaults when None.
    """
    from storyreel.core.devices import pick_device

    config = get_config(name)
    device = pick_device(device) if device is None or isinstance(device, str) else device
    if config.kind == "transformers":
        if weights is not None:
            raise UserError(f"--weights is for MiDaS checkpoints; the transformers depth model {name} loads "
                            "its own weights from its folder")
        return DepthModel(TransformersDepthNet(config), model_id=name, device=device, dtype=dtype)
    if weights is None and config.random_init_seed is not None:
        seed = config.random_init_seed
        return DepthModel(random_dpt(config, seed), model_id=f"{name}-seed{seed}", device=device, dtype=dtype)
    if weights is None:
        if config.hf_weights is None:
            raise UserError(
                f"depth model {name} has no Hugging Face mirror of its official weights; download the "
                f"MiDaS release file and pass it with --weights FILE"
            )
        from storyreel.core.hub import hf_file

        repo, filename = config.hf_weights
        weights = hf_file(repo, filename, what=f"depth model {name}")
        model_id = name
    else:
        weights = Path(weights)
        if not weights.is_file():
            raise UserError(f"depth checkpoint {weights} does not exist (--weights)")
        model_id = f"{name}:{_weights_tag(weights)}"
    with torch.device("meta"):  # the file provides every tensor: skip allocating random ones
        net = DPT(config)
    load_official_weights(net, Path(weights))
    return DepthModel(net, model_id=model_id, device=device, dtype=dtype)


class TransformersDepthNet(torch.nn.Module):
    """A transformers AutoModelForDepthEstimation with the DPT calling convention: normalized
    (B, 3, H, W) in, relative inverse depth (B, h, w) out."""

    def __init__(self, config: DepthModelConfig):
        super().__init__()
        import transformers
        from transformers import AutoModelForDepthEstimation

        self.config = config
        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # load reports go to our one-line errors, not stderr noise
        transformers.logging.disable_progress_bar()
        try:
            self.model = AutoModelForDepthEstimation.from_pretrained(config.folder)
        except (OSError, ValueError) as err:
            raise UserError(f"depth model {config.name}: cannot load {config.folder} "
                            f"({str(err).splitlines()[0]})") from None
        finally:
            transformers.logging.set_verbosity(level)
            transformers.logging.enable_progress_bar()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).predicted_depth


def random_dpt(config: DepthModelConfig, seed: int) -> DPT:
    """The network at random init with `seed`: the `tiny` model, and benchmarks of any architecture."""
    torch.manual_seed(seed)
    net = DPT(config)
    # The head ends in ReLU; with random weights its output is often 0 everywhere. A positive
    # last bias keeps random depth input-dependent, so plumbing downstream sees real variation.
    torch.nn.init.constant_(net.head[4].bias, 1.0)
    return net
