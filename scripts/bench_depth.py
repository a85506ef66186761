"""Depth network throughput: frames/s for `tiny` and full-size `dpt_hybrid_384` (random init).

    python scripts/bench_depth.py [--frames 16] [--sizes 384] [--batches 1 4 16] [--models tiny dpt_hybrid_384]

Measures the network forward on 384 x 384 inputs (what a 384-px frame becomes; fp32 on CPU,
fp16 + channels_last on CUDA, as DepthModel runs it), after a one-frame warm-up. Prints a table
and one JSON line. Random weights run at the same speed as trained ones.
"""

from __future__ import annotations

import argparse
import json
import time


def bench(name: str, size: int, batch: int, frames: int, device: str | None) -> float:
    import torch

    from storyreel.testing.models import create_random_depth_model

    model = create_random_depth_model(name, device=device)
    x = torch.randn(batch, 3, size, size, device=model.device, dtype=model.dtype)
    if model.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    batches = max(1, frames // batch)
    with torch.inference_mode():
        model.net(x[:1])  # warm-up (one frame: allocator and kernel selection)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            model.net(x)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "dpt_hybrid_384"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--frames", type=int, default=16, help="frames timed per setting (at least one batch)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    print(f"{'model':<16} {'batch':>5} {'frames/s':>10}   "
          f"({device}, {args.size} px, torch threads {torch.get_num_threads()})")
    for name in args.models:
        for batch in args.batches:
            fps = bench(name, args.size, batch, args.frames, device)
            results.append({"model": name, "batch": batch, "size": args.size, "device": device, "fps": round(fps, 3)})
            print(f"{name:<16} {batch:>5} {fps:>10.2f}", flush=True)
    print(json.dumps({"bench": "depth", "results": results}))


if __name__ == "__main__":
    main()
