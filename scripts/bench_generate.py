"""Benchmark: our clamped sampler vs diffusers' AnimateDiffControlNetPipeline, and long-clip memory.

In one run, with the same components for both samplers:
  * seconds per denoising step (the loop alone, see DenoisingTimer) at τ = 1.0, 0.5, 0.2 (diffusers gets the matching control_guidance_end)
    and our speed-up, for the tiny preset and for full-size SD1.5-architecture models at random init
    (generation.components.random_sd15_components: UNet 320-640-1280-1280 + AnimateDiff motion adapter +
    ControlNet + VAE + CLIP text encoder, built from config, no download);
  * peak memory of 16 vs 48 frames (windowed) on the tiny preset.
Peak memory is torch.cuda.max_memory_allocated on a GPU; on the CPU it is the process's peak resident
memory during sampling above the resident memory before it (Linux VmHWM, reset via clear_refs).

    python scripts/bench_generate.py [--skip-full] [--full-steps 8] [--full-repeats 2] [--device cpu]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.components import Components, create_components, random_sd15_components  # noqa: E402
from generation.sampler import StructureGuidedSampler  # noqa: E402

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
    UNet call (text encoding, latent setup and VAE decoding, the same for both samplers, are left out)."""

    def __init__(self, components: Components):
        self.modules = (components.controlnet, components.unet)

    def __enter__(self):
        self.start = self.end = None

        def before(module, args):
            if self.start is None:
                self.start = time.perf_counter()

        def after(module, args, output):
            self.end = time.perf_counter()

        self.handles = [m.register_forward_pre_hook(before) for m in self.modules]
        self.handles.append(self.modules[1].register_forward_hook(after))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.seconds = self.end - self.start


def time_pair(name: str, components: Components, device, *, frames: int, size: int, steps: int, repeats: int):
    """Seconds per denoising step (best of `repeats`) of ours and diffusers at each τ."""
    from diffusers import AnimateDiffControlNetPipeline

    sampler = StructureGuidedSampler.from_components(components, device=device)
    pipe = AnimateDiffControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, motion_adapter=None, controlnet=components.controlnet,
        scheduler=type(components.scheduler).from_config(components.scheduler.config)).to(device)
    pipe.set_progress_bar_config(disable=True)
    depth = depth_clip(frames, size).to(device)
    rows = []
    for tau in TAUS:
        def ours():
            sampler("a red ball", depth, num_frames=frames, height=size, width=size, num_inference_steps=steps,
                    tau=tau, generator=torch.Generator().manual_seed(0))

        def theirs():
            pipe(prompt="a red ball", conditioning_frames=list(depth), num_frames=frames, height=size, width=size,
                 num_inference_steps=steps, control_guidance_end=tau, generator=torch.Generator().manual_seed(0),
                 output_type="np")

        times, peaks = {label: float("inf") for label in ("ours", "diffusers")}, {}
        for _ in range(repeats):  # alternate the two, so drift on a shared machine hits both alike
            for label, run in (("ours", ours), ("diffusers", theirs)):
                with PeakMemory(device) as memory, DenoisingTimer(components) as timer:
                    run()
                times[label] = min(times[label], timer.seconds / steps)
                peaks[label] = memory.mib
        rows.append({"models": name, "tau": tau, "steps": steps, "frames": frames, "size": size,
                     "ours_s_per_step": round(times["ours"], 4), "diffusers_s_per_step": round(times["diffusers"], 4),
                     "speedup": round(times["diffusers"] / times["ours"], 3),
                     "ours_peak_mib": round(peaks["ours"], 1), "diffusers_peak_mib": round(peaks["diffusers"], 1)})
        print(f"  {name} tau={tau}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def long_clip_memory(components: Components, device, *, size: int, steps: int) -> dict:
    sampler = StructureGuidedSampler.from_components(components, device=device)
    result = {}
    for frames in (16, 48):
        depth = depth_clip(frames, size).to(device)
        sampler("warm up", depth[:2], num_frames=2, height=size, width=size, num_inference_steps=1)
        with PeakMemory(device) as memory:
            sampler("a red ball", depth, num_frames=frames, height=size, width=size, num_inference_steps=steps,
                    generator=torch.Generator().manual_seed(0))
        result[f"peak_mib_{frames}"] = round(memory.mib, 1)
    result["growth"] = round(result["peak_mib_48"] / result["peak_mib_16"] - 1, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-full", action="store_true", help="tiny preset only")
    parser.add_argument("--full-steps", type=int, default=8, help="steps of the full-size runs (8: τ=0.5 keeps 4)")
    parser.add_argument("--full-repeats", type=int, default=2, help="best of N runs per setting, full-size models")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tiny = create_components("tiny")
    rows = time_pair("tiny", tiny, device, frames=8, size=64, steps=10, repeats=3)
    memory = long_clip_memory(tiny, device, size=128, steps=4)
    if not args.skip_full:
        rows += time_pair("sd15-random", random_sd15_components(), device, frames=8, size=64,
                          steps=args.full_steps, repeats=args.full_repeats)

    print(f"{'models':<12} {'tau':>4} {'ours s/step':>12} {'diffusers s/step':>17} {'speed-up':>9} "
          f"{'ours MiB':>9} {'diffusers MiB':>14}")
    for r in rows:
        print(f"{r['models']:<12} {r['tau']:>4} {r['ours_s_per_step']:>12.4f} {r['diffusers_s_per_step']:>17.4f} "
              f"{r['speedup']:>8.2f}x {r['ours_peak_mib']:>9.1f} {r['diffusers_peak_mib']:>14.1f}")
    print(f"tiny 128x128, windowed: peak {memory['peak_mib_16']} MiB at 16 frames, {memory['peak_mib_48']} MiB "
          f"at 48 frames (growth {memory['growth']:.1%}, target < 20%)")
    print(json.dumps({"bench": "generate", "device": str(device), "timing": rows, "long_clip_memory": memory}))


if __name__ == "__main__":
    main()
