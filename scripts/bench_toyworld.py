"""Each method's effect against its ablation, on held-out toy-world clips, with the `toy` weights.

    python scripts/bench_toyworld.py [--world out/toyworld] [--weights core/presets/toy] [--stages ...]
                                     [--figure docs/toyworld.png]

The world is the one `scripts/train_toyworld.py` trained on (its held-out clips were never seen in
training); it is written first if missing. Every stage and effect of training/toyworld/ whose weights
are in --weights reports its rows (`measure`). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train_toyworld import REPO, world


def main() -> None:
    from storyreel.training.toyworld import EFFECTS, STAGES, stage

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("out/toyworld"), help="the toy world trained on")
    parser.add_argument("--weights", type=Path, default=REPO / "core" / "presets" / "toy", help="weights folder")
    names = list(dict.fromkeys([*STAGES, *EFFECTS]))  # a stage may be its own effect: measured once
    parser.add_argument("--stages", nargs="+", choices=names, default=names,
                        help="trained stages and method effects to measure")
    parser.add_argument("--clips", type=int, default=600, help="clips in the world, if it must be written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="also paint the toy world's picture (training/toyworld/figure.py)")
    args = parser.parse_args()

    world_dir = world(args.world, args.clips, args.seed)
    rows = []
    for name in args.stages:
        folders = getattr(stage(name), "FOLDERS", (name,))  # where the stage writes its weights
        if not all((args.weights / folder).is_dir() for folder in folders):
            rows.append({"stage": name, "row": "(no weights: run scripts/train_toyworld.py)"})
            continue
        rows += [{"stage": name, **row} for row in stage(name).measure(args.weights, world_dir)]
    print(f"{'stage':<10} {'row':<44} numbers")
    for row in rows:
        numbers = {k: v for k, v in row.items() if k not in ("stage", "row")}
        print(f"{row['stage']:<10} {row['row']:<44} {json.dumps(numbers)}")
    print(json.dumps({"bench": "bench_toyworld", "rows": rows}))
    if args.figure:
        from storyreel.training.toyworld.figure import figure

        print(f"wrote {figure(args.weights, world_dir, args.figure)}")


if __name__ == "__main__":
    main()
