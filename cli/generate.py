"""`storyreel generate` and `storyreel eval` (see cli/__init__.py and docs/CLI.md): make a clip, score clips.

Argument parsing and printing only: the work is done by storyreel.generation; heavy imports happen
inside the `_run_*` functions.
"""

from __future__ import annotations

import json
import sys

from storyreel.cli.common import add_command


def add_commands(commands) -> None:
    """Register generate and eval on the top-level parser's subparsers."""
    _add_generate(commands)
    _add_eval(commands)


# -- generate ----------------------------------------------------------------------------------------


def _add_generate(commands) -> None:
    from storyreel.generation.settings import LONG_MODES, GenerationSettings  # plain dataclass: cheap at startup

    parser = add_command(
        commands, "generate", _run_generate, "generate a clip whose layout follows a structure source's depth",
        json="print the output's metadata as JSON", components=("depth", "generator"),
        description="Structure-guided text-to-video: the prompt renders appearance, the depth of SOURCE "
                    "(a video, a depth video, or a clip id with --index) supplies layout and motion for the "
                    "first --tau of the denoising schedule.",
    )
    parser.add_argument("--prompt", required=True, help="what the clip shows")
    parser.add_argument("--structure", metavar="SOURCE",
                        help="video, depth video (from `storyreel depth`) or clip id (with --index); "
                             "required except with --backend t2v-zero")
    parser.add_argument("--out", required=True, help="output .mp4, .gif, or a folder name for PNG frames")
    parser.add_argument("--tau", type=float,
                        help="fraction of the schedule that follows the structure (1 = all, 0 = none; "
                             f"default {GenerationSettings.tau})")
    parser.add_argument("--frames", type=int, help="number of frames (default: the preset's, 16)")
    parser.add_argument("--seed", type=int, help=f"random seed (default {GenerationSettings.seed})")
    parser.add_argument("--speed", type=float, help="playback speed of the structure's motion (1 = real time at "
                        f"the output's frame rate, 2 = twice as fast; default {GenerationSettings.speed:g})")
    parser.add_argument("--index", help="index folder, to use a clip id as SOURCE")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--height", type=int, help="frame height, a multiple of 8 (default: the preset's)")
    parser.add_argument("--width", type=int, help="frame width, a multiple of 8 (default: the preset's)")
    parser.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the preset's)")
    parser.add_argument("--negative-prompt", default="", help="what the clip should not show")
    parser.add_argument("--structure-scale", type=float,
                        help=f"strength of the depth branch (default {GenerationSettings.structure_scale})")
    parser.add_argument("--structure-kind", choices=("auto", "depth", "video"), default="auto",
                        help="treat SOURCE as a depth video (depth) or estimate its depth (video); "
                             "auto: depth if SOURCE has a storyreel depth sidecar")
    parser.add_argument("--character", action="append", default=[], metavar="PACK",
                        help="character pack (.safetensors) from `character train`; repeat for several characters")
    parser.add_argument("--lora-scale", type=float, default=1.0,
                        help="strength of the characters' LoRA (0 = token table only, 1 = as trained)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until they run (GPU)")
    add_backend_flags(parser)
    add_recipe_flag(parser)
    parser.add_argument("--long", choices=LONG_MODES,
                        help="animatediff: how clips longer than one 16-frame window are made "
                             f"(default {GenerationSettings.long}; see docs/CLI.md)")
    parser.add_argument("--motion-field", type=dx_dy, metavar="DX,DY",
                        help="t2v-zero: direction frame 1's latent moves per frame (default 1,1)")
    parser.add_argument("--motion-strength", type=float, metavar="LAMBDA",
                        help="t2v-zero: pixels (of a 512-pixel frame) per frame along the field "
                             f"(default {GenerationSettings.motion_strength:g})")
    parser.add_argument("--t0", type=int, help="t2v-zero: step index of T' (default: three steps after T)")
    parser.add_argument("--t1", type=int, help="t2v-zero: step index of T, above --t0 (default: nearest t=941)")


def add_backend_flags(parser) -> None:
    from storyreel.generation.settings import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS,
                        help="animatediff (motion modules) or t2v-zero (Text2Video-Zero on the image model alone); "
                             "default animatediff")


def add_recipe_flag(parser, what: str = "sampling") -> None:
    from storyreel.core.recipes import recipe_names

    parser.add_argument("--recipe", metavar="NAME", help=f"a paper's {what} settings under your flags, one of "
                        f"{', '.join(recipe_names())} (default fast; `storyreel models` lists every value)")


def dx_dy(text: str) -> tuple[float, float]:
    """'DX,DY' -> (dx, dy); argparse turns the ValueError into a one-line usage error."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(text)
    return float(parts[0]), float(parts[1])


def generate_settings(args, preset: str):
    """The GenerationSettings `generate`'s flags ask for (unchecked: `generate_clip` checks them first)."""
    from storyreel.generation.settings import GenerationSettings

    return GenerationSettings.for_preset(
        preset, recipe=args.recipe, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
        cfg=args.cfg, tau=args.tau, structure_scale=args.structure_scale, seed=args.seed, speed=args.speed,
        backend=args.backend, long=args.long, motion_field=args.motion_field, motion_strength=args.motion_strength,
        t0=args.t0, t1=args.t1)


def _run_generate(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import preset_from_args
    from storyreel.core.progress import Progress
    from storyreel.generation.generate import ClipRequest, generate_clip

    preset = preset_from_args(args)
    device, dtype = device_and_dtype(args)
    progress = Progress("generate", quiet=args.quiet)
    settings = generate_settings(args, preset)
    request = ClipRequest(args.prompt, args.structure, negative_prompt=args.negative_prompt,
                          structure_kind=args.structure_kind, index_dir=args.index)
    summary = generate_clip(
        request, args.out, settings, preset=preset, cpu_offload=args.cpu_offload, device=device, dtype=dtype,
        characters=args.character, lora_scale=args.lora_scale,
        on_step=lambda done, total: progress.update(steps=done, of=total),
    )
    progress.close()
    for note in summary["notes"] if not args.quiet else ():
        print(f"storyreel: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['output']} ({summary['frames']} frames, {summary['width']}x{summary['height']}, "
              f"tau {summary['tau']}, seed {summary['seed']})")
    return 0



# -- eval --------------------------------------------------------------------------------------------


def _add_eval(commands) -> None:
    parser = add_command(commands, "eval", _run_eval,
                         "CLIP-T, CLIP-I, temporal consistency and motion of generated clips (compare backends)",
                         models="model preset for CLIP: a name or a preset .json file (else $STORYREEL_MODELS, "
                                "else default)",
                         json="print a JSON list with one row per clip", components=("clip",))
    parser.add_argument("clip", nargs="+", help="generated clips: mp4/gif files or folders of PNG frames; several "
                        "(e.g. one per backend, from the same prompt) are scored side by side")
    parser.add_argument("--prompt", required=True, help="the prompt the clip was generated from")
    parser.add_argument("--character", action="append", default=[], metavar="PACK",
                        help="character pack used for the clip (CLIP-I against its concept images); repeatable")


def _run_eval(args) -> int:
    from dataclasses import asdict

    from storyreel.core.devices import device_and_dtype
    from storyreel.core.files import sidecar_path
    from storyreel.core.models import preset_from_args
    from storyreel.generation.characters.pack import load_pack
    from storyreel.generation.evaluate import read_clip_frames, score_clip
    from storyreel.index.embed import load_clip

    packs = [load_pack(p) for p in args.character]
    frames = [read_clip_frames(clip) for clip in args.clip]  # every clip readable before CLIP loads
    device, dtype = device_and_dtype(args)
    embedder = load_clip(preset_from_args(args), device=device, dtype=dtype)
    rows = []
    for clip, clip_frames in zip(args.clip, frames):
        try:  # the generating backend, when the clip has storyreel's sidecar
            backend = json.loads(sidecar_path(clip).read_text()).get("backend")
        except (OSError, ValueError, AttributeError):
            backend = None
        rows.append({"clip": str(clip), "backend": backend,
                     **asdict(score_clip(clip_frames, args.prompt, embedder, packs))})
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"prompt {rows[0]['prompt']!r}, CLIP model {rows[0]['model_id']}")
    print(f"{'clip':<40} {'backend':<12} {'frames':>6} {'CLIP-T':>7} {'CLIP-I':>7} {'consistency':>11} "
          f"{'motion px/f':>11}")
    for r in rows:
        clip_i = "-" if r["clip_i"] is None else f"{r['clip_i']:.4f}"
        print(f"{r['clip'][-40:]:<40} {r['backend'] or '-':<12} {r['frames']:>6} {r['clip_t']:>7.4f} {clip_i:>7} "
              f"{r['temporal_consistency']:>11.4f} {r['motion_magnitude']:>11.2f}")
    return 0
