"""Retrain the `toy` preset's models from nothing: write the toy world, then train every stage on it.

    python scripts/train_toyworld.py [--world out/toyworld] [--out core/presets/toy] [--stages clip depth generator]
                                     [--clips 600] [--seed 0] [--threads 2]

The world (storyreel.toyworld, train and held-out clips with their truths) is written once into
--world and reused when its world.json matches the settings. Each stage (training/toyworld/, in the
order of STAGES) writes its weights into --out/<stage>/. Prints a table of the stages' times and
summaries and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def world(folder: Path, clips: int, seed: int) -> Path:
    """The toy world in `folder`, written unless a world of the same clips and seed is already there."""
    from storyreel.toyworld import write_world

    manifest = folder / "world.json"
    if manifest.is_file():
        written = json.loads(manifest.read_text())
        if written.get("clips") == clips and written.get("seed") == seed:
            return folder
    write_world(folder, clips=clips, seed=seed)
    return folder


def main() -> None:
    import torch

    from storyreel.core.progress import Progress
    from storyreel.training.toyworld import STAGES, stage

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("out/toyworld"), help="where the toy world is written")
    parser.add_argument("--out", type=Path, default=REPO / "core" / "presets" / "toy", help="weights folder")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--clips", type=int, default=600, help="clips in the world (a fifth held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    world_dir = world(args.world, args.clips, args.seed)
    rows = [{"stage": "world", "seconds": round(time.perf_counter() - start, 1), "clips": args.clips}]
    for name in args.stages:
        began = time.perf_counter()
        summary = stage(name).train(world_dir, args.out, seed=args.seed, progress=Progress(f"train {name}"))
        rows.append({"stage": name, "seconds": round(time.perf_counter() - began, 1), **summary})
    total = round(time.perf_counter() - start, 1)
    print(f"{'stage':<10} {'seconds':>8}  summary")
    for row in rows:
        rest = {k: v for k, v in row.items() if k not in ("stage", "seconds")}
        print(f"{row['stage']:<10} {row['seconds']:>8}  {json.dumps(rest)}")
    print(f"{'total':<10} {total:>8}")
    print(json.dumps({"bench": "train_toyworld", "total_seconds": total, "threads": args.threads, "stages": rows}))


if __name__ == "__main__":
    main()
