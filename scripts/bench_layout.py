"""Benchmark: what layout control's masked attention (generation/layout_attention.py) adds to a step.

One denoising step's UNet call (classifier-free guidance batch, per-frame text rows, as the pipeline
makes it) timed in three arms, interleaved in one run (A/B/C, B/C/A, C/A/B, ...) so machine load hits
every arm alike, and compared by medians:
  * plain: the UNet's own processors;
  * installed: layout processors wrapped around them, outside the controlled steps (pass-through);
  * masked: inside the controlled steps, two entities with moving boxes (masked cross-, spatial and
    temporal attention, masks cached per resolution as in a real run after its first step).
Energy guidance is optional and not timed here (it runs the UNet a second time, with gradients).

    python scripts/bench_layout.py [--models tiny sd15] [--frames 8] [--size 64] [--repeats 15] [--device cpu]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from storyreel.generation.components import create_components
from storyreel.generation.layout import Layout, LayoutEntity, token_positions
from storyreel.generation.layout_attention import LayoutControl, layout_attention
from storyreel.testing.models import random_sd15_components

PROMPT = "a brown dog chases a red ball across a green lawn"
LAYOUT = Layout((LayoutEntity("dog", "a brown dog", {0: (0.05, 0.3, 0.45, 0.95), 15: (0.4, 0.3, 0.8, 0.95)}),
                 LayoutEntity("ball", "a red ball", {0: (0.6, 0.7, 0.75, 0.85), 15: (0.85, 0.6, 1.0, 0.75)})),
                strength=1.0)


def bench(name: str, components, frames: int, size: int, repeats: int, device: torch.device) -> dict:
    unet, tokenizer, text_encoder = components.unet.to(device), components.tokenizer, components.text_encoder
    tokens = tokenizer(["", PROMPT], padding="max_length", max_length=tokenizer.model_max_length,
                       return_tensors="pt").input_ids
    with torch.no_grad():
        embeddings = text_encoder.to(device)(tokens.to(device))[0].repeat_interleave(frames, dim=0)
    latent = size // 8
    sample = torch.randn((2, unet.config.in_channels, frames, latent, latent),
                         generator=torch.Generator().manual_seed(0))
    sample, t = sample.to(device), torch.tensor(500, device=device)
    positions = [token_positions(tokenizer, PROMPT, e.phrase) for e in LAYOUT.entities]
    control = LayoutControl(LAYOUT, frames, (latent, latent), positions, num_steps=1, cfg=True)

    def step():
        with torch.no_grad():
            unet(sample, t, encoder_hidden_states=embeddings)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # The layout processors stay installed (as for a whole call); "plain" swaps the UNet's own back in.
    def timed(arm: str) -> float:
        wrapped = unet.attn_processors
        if arm == "plain":
            unet.set_attn_processor({name: proc.inner for name, proc in wrapped.items()})
        control.begin(0, range(frames))
        control.active = arm == "masked"
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        unet.set_attn_processor(wrapped)
        return elapsed

    arms = ("plain", "installed", "masked")
    installed = layout_attention(unet, control)
    installed.__enter__()
    for arm in arms:  # warm-up: allocator, kernels, the masks' first build
        timed(arm)
    times = {arm: [] for arm in arms}
    for r in range(repeats):  # interleaved, and the order rotates so no arm always runs first
        for arm in arms[r % 3:] + arms[:r % 3]:
            times[arm].append(timed(arm))
    installed.__exit__(None, None, None)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    return {"models": name, "frames": frames, "size": size, "repeats": repeats,
            **{f"{arm}_s": round(m, 5) for arm, m in medians.items()},
            "installed_ratio": round(medians["installed"] / medians["plain"], 4),
            "masked_ratio": round(medians["masked"] / medians["plain"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (latents are 1/8)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        components = create_components("tiny") if name == "tiny" else random_sd15_components()
        repeats = args.repeats if name == "tiny" else max(3, args.repeats // 3)
        rows.append(bench(name, components, args.frames, args.size, repeats, device))
        del components
    print(f"{'models':<6} {'frames':>6} {'size':>5} {'plain s':>9} {'installed s':>11} {'masked s':>9} "
          f"{'installed×':>10} {'masked×':>8}")
    for r in rows:
        print(f"{r['models']:<6} {r['frames']:>6} {r['size']:>5} {r['plain_s']:>9.4f} {r['installed_s']:>11.4f} "
              f"{r['masked_s']:>9.4f} {r['installed_ratio']:>10.3f} {r['masked_ratio']:>8.3f}")
    print(json.dumps({"benchmark": "layout", "device": str(device), "rows": rows}))


if __name__ == "__main__":
    main()
