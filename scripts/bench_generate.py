"""Benchmark: our clamped StructureGuidedPipeline vs diffusers' AnimateDiffControlNetPipeline, and long-clip memory.

In one run, with the same components for both samplers:
  * seconds per denoising step (the loop alone, see DenoisingTimer) at τ = 1.0, 0.5, 0.2 (diffusers gets the
    matching control_guidance_end)
    and our speed-up, for the tiny preset and for full-size SD1.5-architecture models at random init
    (storyreel.testing.models.random_sd15_components: UNet 320-640-1280-1280 + AnimateDiff motion adapter +
    ControlNet + VAE + CLIP text encoder, built from config, no download);
  * the ControlNet's share of a step (measured time, and FLOPs counted on the meta device) and the
    speed-up ceiling it sets: skipping the ControlNet can save at most (1 + share) / (1 + share·kept/N);
  * peak memory of 16 vs 48 frames (windowed) on the tiny preset;
  * with --memory-512, peak memory of 16 frames at 512x512 with full-size models;
  * the t2v-zero backend's step cost next to AnimateDiff's (both with depth at τ = 1, same frames and
    size): Text2Video-Zero runs the image UNet with cross-frame attention instead of motion modules.
Peak memory is torch.cuda.max_memory_allocated on a GPU; on the CPU it is the process's peak resident
memory during sampling above the resident memory before it (Linux VmHWM, reset via clear_refs).

    python scripts/bench_generate.py [--skip-full] [--full-steps 8] [--full-repeats 3] [--memory-512] [--device cpu]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from storyreel.generation.components import Components, create_components
from storyreel.generation.pipeline import StructureGuidedPipeline, structure_steps
from storyreel.generation.settings import BACKENDS, GenerationSettings, pipeline_class
from storyreel.testing.models import random_sd15_components

TAUS = (1.0, 0.5, 0.2)


def depth_clip(frames: int, size: int) -> torch.Tensor:
    x = torch.linspace(0, 1, size)
    maps = torch.stack([((x + 0.03 * k) % 1.0)[None, :].expand(size, size) for k in range(frames)])
    return maps[:, None].expand(-1, 3, -1, -1).contiguous()


class PeakMemory:
    """Peak memory (MiB) above the level at entry, for the device the samplers run on."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.start = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _status_kib("VmHWM") * 1024
        self.mib = (peak - self.start) / 2**20


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class DenoisingTimer:
    """Wall time of the denoising loop alone: from the first ControlNet/UNet call to the end of the last
    UNet call (text encoding, latent setup and VAE decoding, the same for both samplers, are left out).
    Also the time spent inside each model (`controlnet_seconds`, `unet_seconds`)."""

    def __init__(self, components: Components):
        self.modules = {"controlnet": components.controlnet, "unet": components.unet}

    def __enter__(self):
        self.start = self.end = None
        self.inside = {name: 0.0 for name in self.modules}
        entered = {}

        def before(name):
            def hook(module, args):
                entered[name] = time.perf_counter()
                if self.start is None:
                    self.start = entered[name]
            return hook

        def after(name):
            def hook(module, args, output):
                now = time.perf_counter()
                self.inside[name] += now - entered[name]
                if name == "unet":
                    self.end = now
            return hook

        self.handles = [hook for name, module in self.modules.items()
                        for hook in (module.register_forward_pre_hook(before(name)),
                                     module.register_forward_hook(after(name)))]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.seconds = self.end - self.start
        self.controlnet_seconds, self.unet_seconds = self.inside["controlnet"], self.inside["unet"]


def flop_share(components: Components, *, frames: int, size: int) -> float:
    """FLOPs of one ControlNet pass over one UNet+motion pass (CFG batch of 2), counted on the meta
    device: the models are rebuilt from their configs without weights, nothing is computed."""
    from torch.utils.flop_counter import FlopCounterMode

    latent = size // 2 ** (len(components.vae.config.block_out_channels) - 1)
    with torch.device("meta"):
        unet = type(components.unet).from_config(components.unet.config)
        controlnet = type(components.controlnet).from_config(components.controlnet.config)
        latents = torch.zeros(2, unet.config.in_channels, frames, latent, latent)
        text = torch.zeros(2 * frames, components.tokenizer.model_max_length, unet.config.cross_attention_dim)
        depth = torch.zeros(2 * frames, 3, size, size)
        with FlopCounterMode(display=False) as controlnet_flops:
            down, mid = controlnet(latents.transpose(1, 2).flatten(0, 1), 500, encoder_hidden_states=text,
                                   controlnet_cond=depth, return_dict=False)
        with FlopCounterMode(display=False) as unet_flops:
            unet(latents, 500, encoder_hidden_states=text, down_block_additional_residuals=down,
                 mid_block_additional_residual=mid)
    return controlnet_flops.get_total_flops() / unet_flops.get_total_flops()


def speedup_ceiling(share: float, scheduler, steps: int, tau: float) -> float:
    """The most any sampler can gain by skipping the ControlNet on the steps τ drops (Amdahl): diffusers
    pays UNet + ControlNet every step, an ideal clamp pays the ControlNet only on the kept steps."""
    scheduler.set_timesteps(steps)
    kept = sum(structure_steps(scheduler.timesteps, tau, scheduler.config.num_train_timesteps))
    return (1 + share) / (1 + share * kept / steps)


def ours_on(components: Components, device) -> StructureGuidedPipeline:
    pipe = StructureGuidedPipeline.from_components(components).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_pair(name: str, components: Components, device, *, frames: int, size: int, steps: int, repeats: int):
    """Seconds per denoising step (best of `repeats`) of ours and diffusers at each τ."""
    from diffusers import AnimateDiffControlNetPipeline

    sampler = ours_on(components, device)
    pipe = AnimateDiffControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, motion_adapter=None, controlnet=components.controlnet,
        scheduler=type(components.scheduler).from_config(components.scheduler.config)).to(device)
    pipe.set_progress_bar_config(disable=True)
    depth = depth_clip(frames, size).to(device)
    # Warm up both (first calls pay for allocator growth and kernel selection), then time.
    sampler("warm up", depth, GenerationSettings(frames=frames, height=size, width=size, steps=2))
    pipe(prompt="warm up", conditioning_frames=list(depth), num_frames=frames, height=size, width=size,
         num_inference_steps=2, output_type="np")
    rows = []
    for tau in TAUS:
        def ours(tau=tau):
            settings = GenerationSettings(frames=frames, height=size, width=size, steps=steps, tau=tau)
            sampler("a red ball", depth, settings)

        def theirs(tau=tau):
            pipe(prompt="a red ball", conditioning_frames=list(depth), num_frames=frames, height=size, width=size,
                 num_inference_steps=steps, control_guidance_end=tau, generator=torch.Generator().manual_seed(0),
                 output_type="np")

        times, peaks, shares = {label: float("inf") for label in ("ours", "diffusers")}, {}, []
        pair = (("ours", ours), ("diffusers", theirs))
        for repeat in range(repeats):  # alternate who goes first, so drift on a shared machine hits both alike
            for label, run in (pair if repeat % 2 == 0 else pair[::-1]):
                with PeakMemory(device) as memory, DenoisingTimer(components) as timer:
                    run()
                times[label] = min(times[label], timer.seconds / steps)
                peaks[label] = memory.mib
                if label == "diffusers":  # diffusers runs the ControlNet at every step, whatever τ
                    shares.append(timer.controlnet_seconds / timer.unet_seconds)
        share = sorted(shares)[len(shares) // 2]
        speedup, ceiling = times["diffusers"] / times["ours"], speedup_ceiling(share, sampler.scheduler, steps, tau)
        rows.append({"models": name, "tau": tau, "steps": steps, "frames": frames, "size": size,
                     "ours_s_per_step": round(times["ours"], 4), "diffusers_s_per_step": round(times["diffusers"], 4),
                     "speedup": round(speedup, 3), "controlnet_share": round(share, 3),
                     "ceiling": round(ceiling, 3), "of_ceiling": round(speedup / ceiling, 3),
                     "ours_peak_mib": round(peaks["ours"], 1), "diffusers_peak_mib": round(peaks["diffusers"], 1)})
        print(f"  {name} tau={tau}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def backend_step_cost(name: str, device, *, frames: int, size: int, steps: int, repeats: int, build) -> dict:
    """Seconds per denoising step of each backend (best of `repeats`); `build(backend)` makes the components."""
    row = {"models": name, "frames": frames, "size": size, "steps": steps}
    depth = depth_clip(frames, size).to(device)
    settings = GenerationSettings(frames=frames, height=size, width=size, steps=steps, tau=1.0)
    for backend in BACKENDS:
        components = build(backend)
        pipe = pipeline_class(backend).from_components(components).to(device)
        pipe.set_progress_bar_config(disable=True)
        pipe("warm up", depth[:2], settings.replace(frames=2, steps=1))
        best = float("inf")
        for _ in range(repeats):
            with DenoisingTimer(components) as timer:
                pipe("a red ball", depth, settings)
            best = min(best, timer.seconds / steps)
        row[f"{backend}_s_per_step"] = round(best, 4)
        del pipe, components
    row["t2v_zero_over_animatediff"] = round(row["t2v-zero_s_per_step"] / row["animatediff_s_per_step"], 3)
    print(f"  {name} backends: {row}", file=sys.stderr, flush=True)
    return row


def long_clip_memory(components: Components, device, *, size: int, steps: int) -> dict:
    sampler = ours_on(components, device)
    result = {}
    for frames in (16, 48):
        depth = depth_clip(frames, size).to(device)
        sampler("warm up", depth[:2], GenerationSettings(frames=2, height=size, width=size, steps=1))
        with PeakMemory(device) as memory:
            settings = GenerationSettings(frames=frames, height=size, width=size, steps=steps, tau=1.0)
            sampler("a red ball", depth, settings)
        result[f"peak_mib_{frames}"] = round(memory.mib, 1)
    result["growth"] = round(result["peak_mib_48"] / result["peak_mib_16"] - 1, 3)
    return result


def memory_at_512(device, dtype: torch.dtype) -> dict:
    """Peak memory of 16 frames at 512×512 with the sampler's defaults (SDPA attention, CFG as one batch,
    VAE decoded 4 frames at a time, no offload): the weights plus one denoising step and the decode.
    One step is enough: every step allocates the same, more only take longer. Peak memory is
    measured as PeakMemory does (GPU: allocated; CPU: resident, in a 2-byte dtype a GPU would use)."""
    components = random_sd15_components()
    models = (components.unet, components.controlnet, components.vae, components.text_encoder)
    for model in models:
        model.to(dtype)
    weights = sum(p.numel() * p.element_size() for model in models for p in model.parameters())
    sampler = ours_on(components, device)
    depth = depth_clip(16, 512).to(device)
    with PeakMemory(device) as memory:
        sampler("a red ball", depth, GenerationSettings(frames=16, height=512, width=512, steps=1, tau=1.0))
    return {"dtype": str(dtype).replace("torch.", ""), "weights_gib": round(weights / 2**30, 2),
            "activations_gib": round(memory.mib / 1024, 2), "total_gib": round(weights / 2**30 + memory.mib / 1024, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-full", action="store_true", help="tiny preset only")
    parser.add_argument("--full-steps", type=int, default=8, help="steps of the full-size runs (8: τ=0.5 keeps 4)")
    parser.add_argument("--full-repeats", type=int, default=3, help="best of N runs per setting, full-size models")
    parser.add_argument("--memory-512", action="store_true",
                        help="also measure peak memory of 16 frames at 512x512 (fp16 on a GPU, bf16 on the CPU; "
                             "minutes on a CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tiny = create_components("tiny")
    rows = time_pair("tiny", tiny, device, frames=8, size=64, steps=10, repeats=5)
    memory = long_clip_memory(tiny, device, size=128, steps=4)
    backends = [backend_step_cost("tiny", device, frames=8, size=64, steps=10, repeats=5,
                                  build=lambda backend: create_components("tiny", backend=backend))]
    flops = {"tiny 8x64px": flop_share(tiny, frames=8, size=64)}
    if not args.skip_full:
        sd15 = random_sd15_components()
        rows += time_pair("sd15-random", sd15, device, frames=8, size=64,
                          steps=args.full_steps, repeats=args.full_repeats)
        backends.append(backend_step_cost("sd15-random", device, frames=8, size=64, steps=args.full_steps,
                                          repeats=args.full_repeats,
                                          build=lambda backend: random_sd15_components(backend=backend)))
        # The same count at the size people generate: does the ceiling move with resolution?
        for frames, size in ((8, 64), (16, 256), (16, 512)):
            flops[f"sd15 {frames}x{size}px"] = flop_share(sd15, frames=frames, size=size)
    flops = {name: round(share, 3) for name, share in flops.items()}
    memory_512 = None
    if args.memory_512:
        memory_512 = memory_at_512(device, torch.float16 if device.type == "cuda" else torch.bfloat16)

    print(f"{'models':<12} {'tau':>4} {'ours s/step':>12} {'diffusers s/step':>17} {'speed-up':>9} "
          f"{'ControlNet share':>17} {'ceiling':>8} {'of ceiling':>11} {'ours MiB':>9} {'diffusers MiB':>14}")
    for r in rows:
        print(f"{r['models']:<12} {r['tau']:>4} {r['ours_s_per_step']:>12.4f} {r['diffusers_s_per_step']:>17.4f} "
              f"{r['speedup']:>8.2f}x {r['controlnet_share']:>17.3f} {r['ceiling']:>7.2f}x {r['of_ceiling']:>10.1%} "
              f"{r['ours_peak_mib']:>9.1f} {r['diffusers_peak_mib']:>14.1f}")
    print("ControlNet share = time in the ControlNet / time in the UNet, per step, in diffusers' runs; ceiling = "
          "(1 + share) / (1 + share * kept steps / steps), the most skipping the ControlNet can save")
    print("ControlNet share by FLOPs (CFG batch, counted without weights): "
          + ", ".join(f"{name} {share}" for name, share in flops.items()))
    print(f"tiny 128x128, windowed: peak {memory['peak_mib_16']} MiB at 16 frames, {memory['peak_mib_48']} MiB "
          f"at 48 frames (growth {memory['growth']:.1%}, target < 20%)")
    for r in backends:
        print(f"{r['models']} {r['frames']}x{r['size']}px, depth at tau 1: animatediff {r['animatediff_s_per_step']} "
              f"s/step, t2v-zero {r['t2v-zero_s_per_step']} s/step ({r['t2v_zero_over_animatediff']}x)")
    if memory_512:
        print(f"16 frames 512x512, {memory_512['dtype']}: weights {memory_512['weights_gib']} GiB + one step and "
              f"the VAE decode {memory_512['activations_gib']} GiB = {memory_512['total_gib']} GiB "
              "(target: a 12 GB card)")
    print(json.dumps({"bench": "generate", "device": str(device), "timing": rows, "flop_share": flops,
                      "long_clip_memory": memory, "memory_512": memory_512, "backends": backends}))

if __name__ == "__main__":
    main()
