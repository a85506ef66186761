"""Character-training speed and memory: steps/s and peak memory of `CharacterTrainer.step`.

Two configurations, same code path as `storyreel character train`:
  tiny  the tiny preset at 64×64, 8 frames
  sd15  full-size SD1.5-architecture UNet + AnimateDiff motion modules + depth ControlNet + VAE + CLIP
        text encoder, all at random init (no weights needed), 256×256, 8 frames (the paper's setting)

Peak memory: CUDA max allocated on a GPU; on the CPU, the growth of the process's peak RSS during
the timed steps (weights excluded) next to the total peak RSS. The first step is a warm-up.

    python scripts/bench_train.py [--config tiny sd15] [--steps 2] [--gradient-checkpointing]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from storyreel.generation.components import create_components
from storyreel.generation.training.train import CharacterTrainer, ConceptImage, TrainSettings
from storyreel.testing.models import random_sd15_components


def flat_depth(frames: np.ndarray) -> torch.Tensor:
    """Depth stand-in (the depth model is benchmarked in bench_depth.py; training computes it once)."""
    return torch.full((len(frames), 3, *frames.shape[1:3]), 0.5)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench(name: str, steps: int, gradient_checkpointing: bool) -> dict:
    size = 64 if name == "tiny" else 256
    t0 = time.perf_counter()
    components = create_components("tiny") if name == "tiny" else random_sd15_components()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for model in (components.unet, components.controlnet, components.vae, components.text_encoder):
        model.to(device)
    build_s = time.perf_counter() - t0
    rng = np.random.RandomState(0)
    images = [ConceptImage(f"img{i}", (rng.rand(300, 400, 3) * 255).astype(np.uint8), f"{i}") for i in range(3)]
    settings = TrainSettings(token="<bench>", init_word="bear", steps=steps + 1, size=size, frames=8,
                             gradient_checkpointing=gradient_checkpointing)
    trainer = CharacterTrainer(components, components.ids, settings, images, flat_depth)
    trainer.step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in trainer.lora_params) + trainer.table.rows.numel()
    row = {
        "config": name + ("+gc" if gradient_checkpointing else ""), "device": str(device), "size": size, "frames": 8,
        "steps": steps,
        "steps_per_s": steps / seconds, "s_per_step": seconds / steps, "build_s": build_s,
        "trainable_params": trainable, "peak_rss_mb": peak_rss_mb(),
        "peak_rss_growth_mb": peak_rss_mb() - rss_before, "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15"])
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="train with UNet gradient checkpointing")
    args = parser.parse_args()
    rows = [bench(name, args.steps, args.gradient_checkpointing) for name in args.config]
    print(f"{'config':<9} {'device':<6} {'size':>5} {'s/step':>8} {'steps/s':>8} {'peak RSS MB':>12} "
          f"{'RSS growth MB':>14} {'trainable':>10}")
    for r in rows:
        print(f"{r['config']:<9} {r['device']:<6} {r['size']:>5} {r['s_per_step']:>8.2f} {r['steps_per_s']:>8.3f} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_rss_growth_mb']:>14.0f} {r['trainable_params']:>10}")
    print(json.dumps({"bench": "train", "rows": rows}))


if __name__ == "__main__":
    main()
