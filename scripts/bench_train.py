"""Character-training speed and memory: steps/s and peak memory of `CharacterTrainer.step`.

Two configurations, same code path as `storyreel character train`:
  tiny  the tiny preset at 64×64, 8 frames
  sd15  full-size SD1.5-architecture UNet + AnimateDiff motion modules + depth ControlNet + VAE + CLIP
        text encoder, all at random init (no weights needed), 256×256, 8 frames (the paper's setting)

Peak memory: CUDA max allocated on a GPU; on the CPU, the growth of the process's peak RSS during
the timed steps (weights excluded) next to the total peak RSS. The first step is a warm-up.

    python scripts/bench_train.py [--config tiny sd15] [--steps 2] [--gradient-checkpointing]
    python scripts/bench_train.py --coverage [--coverage-steps 1000] [--coverage-size 32] [--coverage-frames 2]

`--coverage` instead runs real training steps on the tiny preset (full UNet/ControlNet forward and
backward) twice, with free TimeInv rows (`anchors=None`, the paper's literal table) and with the default
anchored table, and counts per row the steps whose gradient reached it (read from the table
parameter's .grad after each step). It reports how many of the rows that DDIM-50 inference reads
(the pipeline's scheduler after `set_timesteps(50)`) received at least 10 updates.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time

import numpy as np
import torch

from storyreel.generation.components import create_components
from storyreel.testing.models import random_sd15_components
from storyreel.training.train import CharacterTrainer, ConceptImage, TrainSettings


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
    trainable = sum(p.numel() for p in trainer.lora_params) + trainer.table_param.numel()
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


def coverage(steps: int, size: int, frames: int, anchors: int | None, inference_steps: int = 50,
             min_updates: int = 10) -> dict:
    """Real training steps on tiny; per-row count of steps whose gradient reached the row."""
    components = create_components("tiny")
    rng = np.random.RandomState(0)
    images = [ConceptImage(f"img{i}", (rng.rand(64, 64, 3) * 255).astype(np.uint8), f"{i}") for i in range(3)]
    settings = TrainSettings(token="<bench>", init_word="bear", steps=steps, size=size, frames=frames,
                             anchors=anchors)
    trainer = CharacterTrainer(components, components.ids, settings, images, flat_depth)
    updates = torch.zeros(trainer.table.num_buckets, dtype=torch.long)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
        updates += trainer.rows_updated().long()
    seconds = time.perf_counter() - t0
    scheduler = copy.deepcopy(components.scheduler)
    scheduler.set_timesteps(inference_steps)
    rows = sorted({trainer.table.bucket(int(t)) for t in scheduler.timesteps})
    counts = updates[rows]
    return {
        "table": "free rows" if anchors is None else f"{anchors} anchors", "steps": steps, "size": size,
        "frames": frames, "s_per_step": seconds / steps, "inference_steps": inference_steps,
        "inference_rows": len(rows), f"rows_ge_{min_updates}": int((counts >= min_updates).sum()),
        "rows_never": int((counts == 0).sum()), "min_updates": int(counts.min()),
        "median_updates": float(counts.float().median()),
        "all_rows_never": int((updates == 0).sum()), "all_rows": int(updates.numel()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15"])
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="train with UNet gradient checkpointing")
    parser.add_argument("--coverage", action="store_true",
                        help="count TimeInv row updates over real training steps (free rows vs anchored)")
    parser.add_argument("--coverage-steps", type=int, default=1000)
    parser.add_argument("--coverage-size", type=int, default=32)
    parser.add_argument("--coverage-frames", type=int, default=2)
    args = parser.parse_args()
    if args.coverage:
        rows = [coverage(args.coverage_steps, args.coverage_size, args.coverage_frames, anchors)
                for anchors in (None, TrainSettings.anchors)]
        print(f"{'table':<11} {'steps':>6} {'s/step':>7} {'DDIM-50 rows >=10':>18} {'never':>6} {'min':>4} "
              f"{'median':>7} {'all rows never':>15}")
        for r in rows:
            print(f"{r['table']:<11} {r['steps']:>6} {r['s_per_step']:>7.3f} "
                  f"{r['rows_ge_10']:>11}/{r['inference_rows']:<6} {r['rows_never']:>6} {r['min_updates']:>4} "
                  f"{r['median_updates']:>7.1f} {r['all_rows_never']:>9}/{r['all_rows']}")
        print(json.dumps({"bench": "train-coverage", "rows": rows}))
        return
    rows = [bench(name, args.steps, args.gradient_checkpointing) for name in args.config]
    print(f"{'config':<9} {'device':<6} {'size':>5} {'s/step':>8} {'steps/s':>8} {'peak RSS MB':>12} "
          f"{'RSS growth MB':>14} {'trainable':>10}")
    for r in rows:
        print(f"{r['config']:<9} {r['device']:<6} {r['size']:>5} {r['s_per_step']:>8.2f} {r['steps_per_s']:>8.3f} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_rss_growth_mb']:>14.0f} {r['trainable_params']:>10}")
    print(json.dumps({"bench": "train", "rows": rows}))


if __name__ == "__main__":
    main()
