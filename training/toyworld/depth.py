"""The toy depth model: a small transformers DPT (`DPTForDepthEstimation`) trained on the toy world's
per-pixel depth, saved with `save_pretrained` so it loads like any pretrained transformers depth model
(`storyreel depth --depth-model FOLDER`, a preset's `"depth": "toy/depth"`; depth/registry.py,
depth/model.py).

Target: relative inverse depth, as MiDaS predicts. Loss (the MiDaS recipe, untrimmed): each frame's
prediction and true inverse depth are normalized alike (minus the median, over the mean absolute
deviation); the loss is their mean absolute difference plus a gradient-matching term at four scales
(weight 0.5). Inputs are the decoded mp4 frames, what the model sees at inference; a random horizontal
flip is the only augmentation (the world has no left/right depth cue).

    summary = train(world_dir, out_dir)   # out_dir/depth/: config.json, model.safetensors, preprocessor_config.json
    rows = measure(out_dir, world_dir)    # held-out clips: trained vs random init of the same network
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from storyreel.core.video import read_video
from storyreel.depth.model import create_depth_model
from storyreel.toyworld.sprites import visible_box

SIZE = 64       # the toy world's frame side, and the network's input side (no resampling)
FAR = 60.0      # the farthest depth in the toy world (night sky): aligned predictions are capped there
MEAN = STD = (0.5, 0.5, 0.5)  # MiDaS DPT input normalization, written into preprocessor_config.json
# A ViT of 4 blocks, 64 wide, patch 8 (an 8×8 token grid at 64 px); the decoder taps every block.
ARCHITECTURE = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128,
                    image_size=SIZE, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                    neck_hidden_sizes=[32, 64, 128, 128], reassemble_factors=[2, 1, 0.5, 0.25],
                    fusion_hidden_size=32, head_in_index=-1)
STEPS, BATCH, LEARNING_RATE, GRADIENT_WEIGHT = 1500, 32, 1e-3, 0.5


def untrained_network(seed: int = 0):
    """The toy depth network at random init with `seed`."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(seed)
    return DPTForDepthEstimation(DPTConfig(**ARCHITECTURE))


def save_network(net, folder: Path) -> Path:
    """`net` as a transformers model folder, with the image processor settings the loader reads."""
    from transformers import DPTImageProcessor

    net.save_pretrained(folder)
    DPTImageProcessor(size={"height": SIZE, "width": SIZE}, keep_aspect_ratio=False, ensure_multiple_of=8,
                      image_mean=list(MEAN), image_std=list(STD)).save_pretrained(folder)
    return folder


def read_split(world_dir: Path, split: str) -> dict[str, np.ndarray]:
    """Every clip of one split ("train" or "heldout"): frames uint8 (N, T, H, W, 3), depth float32 and
    sprite ids uint8 (N, T, H, W)."""
    names = json.loads((Path(world_dir) / "world.json").read_text())[split]
    frames, depth, ids = [], [], []
    for name in names:
        frames.append(read_video(Path(world_dir) / name))
        with np.load(Path(world_dir) / name.replace(".mp4", ".depth.npz")) as truth:
            depth.append(truth["depth"].astype(np.float32))
            ids.append(truth["ids"])
    return {"frames": np.stack(frames), "depth": np.stack(depth), "ids": np.stack(ids)}


def align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`pred` (B, H, W) under the per-frame scale and shift that best fit `target` (least squares)."""
    p, t = pred.flatten(1), target.flatten(1)
    p_mean, t_mean = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
    covariance = ((p - p_mean) * (t - t_mean)).mean(1, keepdim=True)
    variance = (p - p_mean).pow(2).mean(1, keepdim=True)
    scale = covariance / (variance + 1e-12)  # a constant prediction aligns to the target's mean
    return (scale * (p - p_mean) + t_mean).view_as(pred)


def normalized(inverse_depth: torch.Tensor) -> torch.Tensor:
    """Each frame minus its median, over its mean absolute deviation (MiDaS' per-image normalization)."""
    flat = inverse_depth.flatten(1)
    shifted = flat - flat.median(1, keepdim=True).values
    return (shifted / shifted.abs().mean(1, keepdim=True).clamp_min(1e-6)).view_as(inverse_depth)


def midas_loss(pred: torch.Tensor, inverse_depth: torch.Tensor) -> torch.Tensor:
    """MiDaS' scale-and-shift-invariant loss: prediction and truth each normalized per frame, their mean
    absolute difference, plus multi-scale gradient matching. Normalizing both (instead of fitting a
    scale) keeps the scale positive: near is high, never low. MiDaS also trims the 20% largest residuals
    against noisy labels; the toy truth is exact, and trimming dropped the object's own pixels (on held-out
    clips after 600 steps, the object was predicted nearer than its background 0.71 of the time with
    trimming, 0.97 without)."""
    residual = normalized(pred) - normalized(inverse_depth)
    loss = residual.abs().mean()
    for scale in range(4):
        r = residual[:, :: 2 ** scale, :: 2 ** scale]
        grad = (r[:, :, 1:] - r[:, :, :-1]).abs().mean() + (r[:, 1:] - r[:, :-1]).abs().mean()
        loss = loss + GRADIENT_WEIGHT * grad / 4
    return loss


def network_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalized (B, 3, H, W), as depth/model.py feeds the network."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (MEAN, STD))
    return (x - mean) / std


def train(world_dir: Path, out_dir: Path, seed: int = 0, progress=None, steps: int = STEPS) -> dict:
    """Train the toy depth network on the world's train clips; writes out_dir/depth/ (see module doc)."""
    data = read_split(world_dir, "train")
    frames = data["frames"].reshape(-1, SIZE, SIZE, 3)
    inverse = torch.from_numpy(1.0 / data["depth"].reshape(-1, SIZE, SIZE))
    net = untrained_network(seed).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    warmup = steps // 20
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    rng = np.random.default_rng([seed, 11])
    started, losses = time.perf_counter(), []
    for step in range(steps):
        pick = rng.integers(len(frames), size=BATCH)
        x, target = network_input(frames[pick]), inverse[pick]
        if rng.random() < 0.5:
            x, target = x.flip(-1), target.flip(-1)
        loss = midas_loss(net(pixel_values=x).predicted_depth, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress is not None and (step + 1) % 50 == 0:
            progress.update(step=step + 1, of=steps, loss=float(np.mean(losses[-50:])))
    folder = save_network(net, Path(out_dir) / "depth")
    return {"folder": str(folder), "parameters": sum(p.numel() for p in net.parameters()), "steps": steps,
            "batch": BATCH, "train_frames": len(frames), "seconds": round(time.perf_counter() - started, 1),
            "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:]))}


def average_ranks(rows: torch.Tensor) -> torch.Tensor:
    """Each row's values as ranks, tied values sharing their mean rank (a sky is one tied plane)."""
    ranked = []
    for row in rows:
        _, which, counts = torch.unique(row, return_inverse=True, return_counts=True)
        before = counts.cumsum(0) - counts
        ranked.append((before + (counts + 1) / 2).double()[which])
    return torch.stack(ranked)


def frame_scores(pred: np.ndarray, depth: np.ndarray) -> dict[str, float]:
    """Agreement of predicted inverse depth with true depth, per frame after scale/shift alignment in
    inverse depth (the MiDaS evaluation), averaged over frames: AbsRel, δ<1.25, Spearman."""
    truth = torch.from_numpy(1.0 / depth)
    aligned = align(torch.from_numpy(pred).double(), truth.double()).float()
    predicted_depth = 1.0 / aligned.clamp_min(1.0 / FAR)
    target = torch.from_numpy(depth)
    abs_rel = ((predicted_depth - target).abs() / target).flatten(1).mean(1)
    ratio = torch.maximum(predicted_depth / target, target / predicted_depth)
    delta1 = (ratio < 1.25).float().flatten(1).mean(1)
    ranks_pred = average_ranks(torch.from_numpy(pred).flatten(1))
    ranks_true = average_ranks(-target.flatten(1))
    spearman = torch.nan_to_num(torch.corrcoef(torch.cat([ranks_pred, ranks_true]))
                                .diagonal(len(pred)), nan=0.0)  # a constant prediction ranks nothing: 0
    return {"abs_rel": float(abs_rel.mean()), "delta1": float(delta1.mean()), "spearman": float(spearman.mean())}


def ordering_accuracy(pred: np.ndarray, ids: np.ndarray) -> tuple[float, int]:
    """How often an object is predicted nearer (higher mean inverse depth) than the background inside its
    visible box, over every frame and object with both visible; and how many such pairs there were."""
    correct = []
    for frame_pred, frame_ids in zip(pred, ids):
        for sprite in np.unique(frame_ids[frame_ids > 0]):
            x0, y0, x1, y1 = visible_box(frame_ids, sprite)
            box_ids, box_pred = frame_ids[y0:y1, x0:x1], frame_pred[y0:y1, x0:x1]
            if (box_ids == 0).any():
                correct.append(box_pred[box_ids == sprite].mean() > box_pred[box_ids == 0].mean())
    return float(np.mean(correct)), len(correct)


def score(pred: np.ndarray, data: dict[str, np.ndarray], row: str) -> dict:
    """One measured row for predictions `pred` (N·T, H, W) of a split's frames."""
    depth, ids = data["depth"].reshape(pred.shape), data["ids"].reshape(pred.shape)
    accuracy, pairs = ordering_accuracy(pred, ids)
    return {"row": row, **frame_scores(pred, depth), "object_nearer": accuracy, "object_pairs": pairs,
            "frames": len(pred)}


def predict_split(model_folder: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    """Inverse depth of every frame of a split through the project's loader (storyreel.depth.create_depth_model)."""
    model = create_depth_model(str(model_folder), device="cpu")
    return model.predict(data["frames"].reshape(-1, SIZE, SIZE, 3), batch_size=64)


def measure(out_dir: Path, world_dir: Path) -> list[dict]:
    """Held-out clips: the trained network, the same network at random init, a `lower in the frame is
    nearer` prior and the truth itself (the ceiling of every number)."""
    data = read_split(world_dir, "heldout")
    rows = [score(predict_split(Path(out_dir) / "depth", data), data, "trained")]
    with tempfile.TemporaryDirectory() as scratch:
        rows.append(score(predict_split(save_network(untrained_network(0), Path(scratch)), data), data,
                          "random init"))
    count = data["depth"].shape[0] * data["depth"].shape[1]
    rows_prior = np.broadcast_to(np.arange(SIZE, dtype=np.float32)[:, None], (count, SIZE, SIZE))
    rows.append(score(np.ascontiguousarray(rows_prior), data, "prior: lower is nearer"))
    rows.append(score(1.0 / data["depth"].reshape(-1, SIZE, SIZE), data, "truth"))
    return rows
