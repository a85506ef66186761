"""Benchmark: the long-clip modes (`--long`) of the animatediff backend at 48 and 64 frames, tiny preset, CPU.

For every mode in settings.LONG_MODES and every length:
  * lag-stride noise correlation: the mean Pearson correlation between the initial noise of output
    frames one window stride (window_frames − overlap_frames = 12) apart; a content cycle of that
    period shows up here first (target ≤ 0.5; taking 97% of the noise of the frame one stride
    earlier, the `stride` reference row of docs/benchmarks.md, gives 0.97); the same at one
    window (16) apart, where FreeNoise's rescheduled noise repeats;
  * seam smoothness: the change across each seam (mean |frame − previous frame| where a window's
    first kept frame follows the previous window's last) over the clip's median frame-to-frame
    change, min and max over seams and seeds (target 0.8–1.25);
  * held frames: seams whose change is below 0.3 × the median change (target 0);
  * peak torch memory while sampling (CPU allocations from the profiler, deterministic), MiB, less
    the clip-sized depth and decoded frames (F·3·H·W floats each), and its growth from the shortest
    length (target: flat).
With --before REV, a row `before` runs generation/pipeline.py as it is at git revision REV on the same
inputs (to compare a change of the long-clip code with the current one).
The tiny models are random, so frames are noise-like: the seam numbers compare modes, not quality.

    python scripts/bench_long.py [--seeds 3] [--steps 4] [--frames 48 64] [--before REV]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from storyreel.generation.components import create_components
from storyreel.generation.long_clips import clip_noise, long_clip_noise, long_clip_plan
from storyreel.generation.pipeline import StructureGuidedPipeline
from storyreel.generation.settings import LONG_MODES, GenerationSettings
from storyreel.testing.probes import peak_torch_bytes

SIZE = 64
HELD = 0.3  # a seam change below this fraction of the median change is a held frame


def depth_clip(frames: int, size: int = SIZE) -> torch.Tensor:
    """A horizontal depth ramp sliding right (a panning camera), as the tests use."""
    x = torch.linspace(0, 1, size)
    maps = torch.stack([((x + 0.03 * k) % 1.0)[None, :].expand(size, size) for k in range(frames)])
    return maps[:, None].expand(-1, 3, -1, -1).contiguous()



def pipeline_before(rev: str):
    """generation/pipeline.py as it was at `rev`, imported as its own module."""
    source = subprocess.run(["git", "show", f"{rev}:generation/pipeline.py"], check=True, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "pipeline_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pipeline_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipeline_before"] = module
    spec.loader.exec_module(module)
    return module


def lag_correlation(noise: torch.Tensor, lag: int) -> float:
    """Mean Pearson correlation of frame k's and frame k + lag's noise, (1, C, F, h, w)."""
    flat = noise[0].transpose(0, 1).flatten(1).double()
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True)
    return float((flat[:-lag] * flat[lag:]).mean(1).mean())


def noise_correlation(mode: str, frames: int, settings: GenerationSettings, seeds: int, before=None,
                      lag: int | None = None) -> float:
    lag = lag or settings.window_frames - settings.overlap_frames
    values = []
    for seed in range(seeds):
        generator, shape = torch.Generator().manual_seed(seed), (1, 4, frames, 8, 8)
        if before is not None:
            windows = before.plan_windows(frames, settings.window_frames, settings.overlap_frames)
            values.append(lag_correlation(before.initial_noise(shape, windows, generator, torch.float32), lag))
            continue
        plans = long_clip_plan(frames, settings.window_frames, settings.overlap_frames, settings.steps, mode)
        values.append(lag_correlation(clip_noise(plans, long_clip_noise(shape, plans, mode, generator, torch.float32)),
                                      lag))
    return float(np.mean(values))


def seams_of(plans) -> list[int]:
    """Output frames that start a window's kept frames (their change from the frame before is a seam)."""
    return [min(output for _, output in plan.keep) for plan in plans[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, nargs="+", default=[48, 64])
    parser.add_argument("--before", metavar="REV", help="also run generation/pipeline.py as of this git revision")
    args = parser.parse_args()
    torch.set_num_threads(1)

    components = create_components("tiny")
    pipes = {mode: StructureGuidedPipeline.from_components(components) for mode in LONG_MODES}
    before = None
    if args.before:
        before = pipeline_before(args.before)
        pipes["before"] = before.StructureGuidedPipeline.from_components(components)
    modes = list(pipes)
    rows = []
    for mode in modes:
        pipe = pipes[mode]
        pipe.set_progress_bar_config(disable=True)
        for frames in args.frames:
            long = mode if mode in LONG_MODES else LONG_MODES[0]  # `before` ignores the field
            settings = GenerationSettings(frames=frames, height=SIZE, width=SIZE, steps=args.steps, tau=1.0, long=long)
            if mode == "before":
                windows = before.plan_windows(frames, settings.window_frames, settings.overlap_frames)
                seams = [w.start + w.overlap for w in windows[1:]]
            else:
                seams = seams_of(long_clip_plan(frames, settings.window_frames, settings.overlap_frames,
                                                settings.steps, mode))
            depth = depth_clip(frames)
            ratios, peak = [], 0
            for seed in range(args.seeds):
                result = []
                run = settings.replace(seed=seed)
                peak = max(peak, peak_torch_bytes(lambda p=pipe, d=depth, r=run, out=result: out.append(p(
                    "a red ball rolling on grass", d, r, output_type="float"))))
                change = np.abs(np.diff(result[0].frames, axis=0)).mean(axis=(1, 2, 3))
                ratios += [float(change[s - 1] / np.median(change)) for s in seams]
            peak -= 2 * frames * 3 * SIZE * SIZE * 4  # the prepared depth and the decoded frames
            rows.append({
                "mode": mode, "frames": frames,
                "lag_stride_noise_corr": round(noise_correlation(mode, frames, settings, args.seeds,
                                                                 before if mode == "before" else None), 3),
                "lag_window_noise_corr": round(noise_correlation(mode, frames, settings, args.seeds,
                                                                 before if mode == "before" else None,
                                                                 settings.window_frames), 3),
                "seam_ratio_min": round(min(ratios), 3), "seam_ratio_max": round(max(ratios), 3),
                "seam_ratio_mean": round(float(np.mean(ratios)), 3),
                "held_frames": sum(r < HELD for r in ratios), "peak_mib": round(peak / 2**20, 2),
            })
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        for r in mine:
            r["peak_growth_mib"] = round(r["peak_mib"] - mine[0]["peak_mib"], 2)
            r["meets_targets"] = (r["lag_stride_noise_corr"] <= 0.5 and 0.8 <= r["seam_ratio_mean"] <= 1.25
                                  and r["held_frames"] == 0)

    print(f"{'mode':9} {'frames':>6} {'corr@stride':>11} {'corr@window':>11} {'seam min':>8} {'seam mean':>9} "
          f"{'seam max':>8} {'held':>4} {'peak MiB':>8} {'growth':>6} {'targets':>7}")
    for r in rows:
        print(f"{r['mode']:9} {r['frames']:>6} {r['lag_stride_noise_corr']:>11.3f} {r['lag_window_noise_corr']:>11.3f} "
              f"{r['seam_ratio_min']:>8.3f} "
              f"{r['seam_ratio_mean']:>9.3f} {r['seam_ratio_max']:>8.3f} {r['held_frames']:>4} "
              f"{r['peak_mib']:>8.2f} {r['peak_growth_mib']:>6.2f} {str(r['meets_targets']):>7}")
    print(json.dumps({"bench": "long", "seeds": args.seeds, "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
