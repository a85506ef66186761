"""`storyreel` commands of the `generation` package (see storyreel/cli.py and ../shared/CLI.md)."""

from __future__ import annotations


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    parser = commands.add_parser(
        "generate", help="generate a clip whose layout follows a structure source's depth",
        description="Structure-guided text-to-video: the prompt renders appearance, the depth of SOURCE "
                    "(a video, a depth video, or a clip id with --index) supplies layout and motion for the "
                    "first --tau of the denoising schedule.",
    )
    parser.add_argument("--prompt", required=True, help="what the clip shows")
    parser.add_argument("--structure", required=True, metavar="SOURCE",
                        help="video, depth video (from `storyreel depth`) or clip id (with --index)")
    parser.add_argument("--out", required=True, help="output .mp4, .gif, or a folder name for PNG frames")
    parser.add_argument("--tau", type=float, default=0.5,
                        help="fraction of the schedule that follows the structure (1 = all, 0 = none; default 0.5)")
    parser.add_argument("--frames", type=int, help="number of frames (default: the preset's, 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--models", help="model preset: tiny or default (else $STORYREEL_MODELS, else default)")
    parser.add_argument("--index", help="index folder, to use a clip id as SOURCE")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--height", type=int, help="frame height, a multiple of 8 (default: the preset's)")
    parser.add_argument("--width", type=int, help="frame width, a multiple of 8 (default: the preset's)")
    parser.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the preset's)")
    parser.add_argument("--negative-prompt", default="", help="what the clip should not show")
    parser.add_argument("--structure-scale", type=float, default=1.0, help="strength of the depth branch")
    parser.add_argument("--structure-kind", choices=("auto", "depth", "video"), default="auto",
                        help="treat SOURCE as a depth video (depth) or estimate its depth (video); "
                             "auto: depth if SOURCE has a storyreel depth sidecar")
    parser.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until they run (GPU)")
    parser.add_argument("--json", action="store_true", help="print the output's metadata as JSON")
    parser.set_defaults(run=_run_generate)


def _run_generate(args) -> int:
    import json
    import sys

    from generation.generate import generate_clip
    from index.presets import resolve_preset

    summary = generate_clip(
        args.prompt, args.structure, args.out, preset=resolve_preset(args.models), tau=args.tau,
        frames=args.frames, seed=args.seed, steps=args.steps, height=args.height, width=args.width, cfg=args.cfg,
        negative_prompt=args.negative_prompt, structure_scale=args.structure_scale, index_dir=args.index,
        structure_kind=args.structure_kind, cpu_offload=args.cpu_offload,
    )
    for note in summary["notes"]:
        print(f"storyreel: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['output']} ({summary['frames']} frames, {summary['width']}x{summary['height']}, "
              f"tau {summary['tau']}, seed {summary['seed']})")
    return 0
