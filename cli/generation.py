"""`storyreel` commands of the `generation` package (see cli/__init__.py and docs/CLI.md).

generate, character train, eval, plan, render, demo. Argument parsing and printing only: the
work is done by the package's Python API; heavy imports happen inside the `_run_*` functions.
"""

from __future__ import annotations

import argparse
import json
import sys

from storyreel.cli.common import add_command


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    _add_generate(commands)
    _add_character(commands)
    _add_eval(commands)
    _add_plan(commands)
    _add_render(commands)
    _add_demo(commands)


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
    _add_backend_flags(parser)
    parser.add_argument("--long", choices=LONG_MODES,
                        help="animatediff: how clips longer than one 16-frame window are made "
                             f"(default {GenerationSettings.long}; see docs/CLI.md)")
    parser.add_argument("--motion-field", type=dx_dy, metavar="DX,DY",
                        help="t2v-zero: direction frame 1's latent moves per frame (default 1,1)")
    parser.add_argument("--motion-strength", type=float, metavar="LAMBDA",
                        help="t2v-zero: pixels (of a 512-pixel frame) per frame along the field "
                             f"(default {GenerationSettings.motion_strength:g})")
    parser.add_argument("--t0", type=int, help="t2v-zero: step index of T' (default: the step nearest t=881)")
    parser.add_argument("--t1", type=int, help="t2v-zero: step index of T, above --t0 (default: nearest t=941)")


def _add_backend_flags(parser) -> None:
    from storyreel.generation.settings import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS,
                        help="animatediff (motion modules) or t2v-zero (Text2Video-Zero on the image model alone); "
                             "default animatediff")


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
        preset, frames=args.frames, height=args.height, width=args.width, steps=args.steps, cfg=args.cfg,
        tau=args.tau, structure_scale=args.structure_scale, seed=args.seed, backend=args.backend, long=args.long,
        motion_field=args.motion_field, motion_strength=args.motion_strength, t0=args.t0, t1=args.t1)


def _run_generate(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import preset_from_args
    from storyreel.core.progress import Progress
    from storyreel.generation.generate import generate_clip

    preset = preset_from_args(args)
    device, dtype = device_and_dtype(args)
    progress = Progress("generate", quiet=args.quiet)
    settings = generate_settings(args, preset)
    summary = generate_clip(
        args.prompt, args.structure, args.out, settings, preset=preset, negative_prompt=args.negative_prompt,
        index_dir=args.index, structure_kind=args.structure_kind, cpu_offload=args.cpu_offload,
        device=device, dtype=dtype,
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


# -- character train ---------------------------------------------------------------------------------


def _add_character(commands) -> None:
    character = commands.add_parser("character", help="personalized character packs (TimeInv + LoRA)")
    sub = character.add_subparsers(dest="character_command", required=True, metavar="COMMAND")
    parser = add_command(sub, "train", _run_character_train, "train a character pack from a folder of images",
                         components=("depth", "generator"))
    parser.add_argument("images_dir", help="folder with 1-50 photos of the character (jpg, png, webp, bmp, tif)")
    parser.add_argument("--token", required=True, help='the new token, e.g. "<teddy>"; must not be a known word')
    parser.add_argument("--init-word", required=True, help="one-token word of the character's class, e.g. bear")
    parser.add_argument("--out", required=True, help="character pack to write (.safetensors)")
    parser.add_argument("--mode", choices=("timeinv", "ti"), default="timeinv",
                        help="timeinv: one embedding per timestep bucket (default); ti: classic textual inversion")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (paper: 1000)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of table and LoRA (paper: 1e-4)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank")
    parser.add_argument("--buckets", type=int, default=None,
                        help="TimeInv rows (timestep buckets); default one per training timestep")
    parser.add_argument("--anchors", type=int, default=50,
                        help="learned anchors the TimeInv rows are interpolated from while training (default 50)")
    parser.add_argument("--frames", type=int, default=8, help="frames of each static pseudo-video")
    parser.add_argument("--size", type=int, default=None,
                        help="training resolution, a multiple of 8 (default: the preset's, 256; tiny: 64)")
    parser.add_argument("--tau", type=float, default=1.0, help="depth clamp used in training, as in generate")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="save a resumable checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    parser.add_argument("--reg-index", default=None, metavar="INDEX_DIR",
                        help="mix in real clips of the init word's class retrieved from this index")
    parser.add_argument("--reg-clips", type=int, default=200, help="how many clips --reg-index retrieves (paper: ~200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute UNet activations in backward (much less memory, slower; "
                             "default: on with CUDA)")
    _add_character_export(sub)


def _add_character_export(sub) -> None:
    from storyreel.generation.characters.export import DEFAULT_TI_STEPS, FORMATS

    parser = add_command(sub, "export", _run_character_export,
                         "write a character pack as a diffusers or kohya LoRA, or a textual-inversion embedding",
                         models=None, json="print the export summary as JSON")
    parser.add_argument("pack", metavar="PACK", help="character pack (.safetensors) from `character train`")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="diffusers: LoRA for pipe.load_lora_weights; kohya: lora_unet_* LoRA for ComfyUI/A1111; "
                             "ti: the token's embedding for load_textual_inversion")
    parser.add_argument("--out", required=True, metavar="FILE", help="file to write (.safetensors)")
    parser.add_argument("--steps", type=int, default=DEFAULT_TI_STEPS,
                        help="ti of a TimeInv pack: average the rows this many sampling steps read "
                             f"(default {DEFAULT_TI_STEPS})")


def _run_character_export(args) -> int:
    from storyreel.generation.characters.export import export_pack

    summary = export_pack(args.pack, args.out, args.format, steps=args.steps)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['out']} ({summary['format']}, token {summary['token']}, {summary['tensors']} tensors)"
              + (f"; {summary['note']}" if summary["note"] else ""))
    return 0


def _run_character_train(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import preset_from_args
    from storyreel.core.progress import Progress

    device, dtype = device_and_dtype(args, training=True)  # a bad --device fails before the heavy imports
    preset = preset_from_args(args)

    from storyreel.training.train import TrainSettings, train_character

    settings = TrainSettings(
        token=args.token, init_word=args.init_word, mode=args.mode, steps=args.steps, learning_rate=args.lr,
        lora_rank=args.rank, num_buckets=args.buckets, anchors=args.anchors, frames=args.frames, size=args.size,
        tau=args.tau,
        checkpoint_every=args.checkpoint_every, seed=args.seed, gradient_checkpointing=args.gradient_checkpointing,
    )
    summary = train_character(args.images_dir, args.out, settings, preset=preset, reg_index=args.reg_index,
                              reg_clips=args.reg_clips, resume=args.resume, device=device, dtype=dtype,
                              progress=Progress("character train", quiet=args.quiet))
    print(json.dumps(summary) if args.json else
          f"wrote {summary['pack']}: token {summary['token']} ({summary['mode']}, {summary['buckets']} rows), "
          f"{summary['steps']} steps, final loss {summary['final_loss']:.4f}, {summary['images']} images")
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


# -- plan --------------------------------------------------------------------------------------------


def _add_plan(commands) -> None:
    parser = add_command(commands, "plan", _run_plan, "prose story -> story file of single-event plots",
                         models="model preset whose size, frames, steps and cfg the story's defaults get "
                                "(else $STORYREEL_MODELS, else default)",
                         json="print the plan as one JSON document", device=False)
    parser.add_argument("story", metavar="STORY.txt", help="the story as prose (plain text)")
    parser.add_argument("--out", required=True, metavar="STORY.yaml", help="story file to write")
    parser.add_argument("--character", action="append", default=[], metavar="NAME=TOKEN[=PACK]",
                        help="a character: its name in the prose, its token, optionally its pack file "
                             "(default TOKEN.safetensors beside --out); repeatable")
    parser.add_argument("--llm", metavar="URL", help="plan with an OpenAI-compatible chat-completions "
                        "server at URL (nothing is sent without this); $STORYREEL_LLM_API_KEY is sent as "
                        "a bearer token if set")
    parser.add_argument("--llm-model", metavar="NAME", help="model name for --llm")
    parser.add_argument("--llm-timeout", type=float, default=120.0, metavar="S",
                        help="seconds one request may take in all, reply included (default 120; at most 3600)")
def _run_plan(args) -> int:
    import dataclasses
    import os
    import re
    from pathlib import Path

    from storyreel.core.errors import UserError
    from storyreel.core.files import check_output_path
    from storyreel.core.models import resolve_preset
    from storyreel.story.format import plot_to_dict, preset_defaults
    from storyreel.story.planner import check_llm_options, plan_rule_based, plan_with_llm, write_story

    story_path, out = Path(args.story), Path(args.out)
    check_output_path(out, "--out", create_parents=True)
    if args.llm:
        check_llm_options(args.llm, args.llm_timeout)
    try:
        prose = story_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{story_path}: the story text is not UTF-8 (byte {err.start}); save it as UTF-8 "
                        "text") from None
    except OSError as err:
        raise UserError(f"{story_path}: cannot read the story text ({err.strerror or err})") from None
    characters, packs = {}, {}
    for spec in args.character:
        parts = spec.split("=", 2)
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip() or re.search(r"\s", parts[1].strip()):
            raise UserError(f"--character {spec!r}: expected NAME=TOKEN or NAME=TOKEN=PACK, e.g. Rex='<rex>'")
        characters[parts[0].strip()] = parts[1].strip()
        if len(parts) == 3:
            packs[parts[1].strip()] = Path(parts[2]).resolve()  # relative to where the command runs

    defaults = preset_defaults(resolve_preset(args.models))
    if args.llm:
        if not args.llm_model:
            raise UserError("--llm needs --llm-model NAME (the model the server should use)")
        story = plan_with_llm(prose, args.llm, args.llm_model, characters, args.llm_timeout, title=story_path.stem,
                              packs=packs, api_key=os.environ.get("STORYREEL_LLM_API_KEY"), frames=defaults["frames"])
    else:
        story = plan_rule_based(prose, characters, title=story_path.stem, packs=packs)
    story = dataclasses.replace(story, defaults=defaults)
    write_story(story, out)

    for token, character in story.characters.items():
        pack = out.resolve().parent / character.pack  # relative packs are relative to the story file
        if not pack.is_file() and not args.quiet:
            print(f"note: {out}: pack for {token} not found yet ({pack}); make it with "
                  f"`storyreel character train IMAGES_DIR --token '{token}' --init-word WORD --out {pack}`",
                  file=sys.stderr)
    plots = [{f.name: None for f in dataclasses.fields(p) if f.name != "lines"} | plot_to_dict(p) for p in story.plots]
    if args.json:
        print(json.dumps({"out": str(out), "title": story.title, "planner": "llm" if args.llm else "rules",
                          "plots": plots}))
    else:
        for i, plot in enumerate(story.plots):
            print(f"{i:>3}  {plot.prompt}" + (f"  [{plot.motion}]" if plot.motion else ""))
        print(f"wrote {len(story.plots)} plots to {out}", file=sys.stderr)
    return 0


# -- render and demo ---------------------------------------------------------------------------------


def _add_render(commands) -> None:
    parser = add_command(commands, "render", _run_render,
                         "render a story file into plot clips, story.mp4 and a storyboard",
                         json="print the manifest as JSON", components=("clip", "depth", "generator"),
                         models="model preset (default: the story's `models: preset`, else the one the index was "
                                "built with, else $STORYREEL_MODELS, else default)")
    parser.add_argument("story", metavar="STORY.yaml", help="story file (YAML or JSON; see README)")
    parser.add_argument("--index", required=True, help="index folder to retrieve source clips from")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (rerun to resume)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until they run (GPU)")
    _add_backend_flags(parser)  # for plots whose story file names no backend
    parser.add_argument("--force", action="store_true",
                        help="render into a non-empty folder that is not a storyreel render (its story.mp4, "
                             "manifest.json and plots/ may be replaced)")


def _run_render(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import COMPONENTS
    from storyreel.core.progress import Progress
    from storyreel.story.render import render_story, summary_table

    device, dtype = device_and_dtype(args)
    overrides = {c.name: getattr(args, c.dest) for c in COMPONENTS}
    manifest = render_story(args.story, args.index, args.out, preset=args.models, backend=args.backend,
                            progress=Progress("render", quiet=args.quiet), overrides=overrides, device=device,
                            dtype=dtype, cpu_offload=args.cpu_offload, force=args.force)
    if not args.quiet:
        print(summary_table(list(manifest["plots"].values())), file=sys.stderr)
    if args.json:
        print(json.dumps(manifest))
    else:
        print(f"wrote {args.out}/story.mp4 ({manifest['story']['frames']} frames), storyboard.png, manifest.json")
    return 0


def _add_demo(commands) -> None:
    parser = add_command(commands, "demo", _run_demo,
                         "the whole chain on a synthetic corpus with tiny models (offline)", models=None, json=None)
    parser.add_argument("--out", default="storyreel-demo", help="output folder (default ./storyreel-demo)")


def _run_demo(args) -> int:
    from storyreel.core.files import check_output_path
    from storyreel.core.progress import Progress
    from storyreel.story.demo import run_demo

    check_output_path(args.out, "--out", folder=True, create_parents=True)
    result = run_demo(args.out, Progress("demo", quiet=args.quiet))
    print(f"demo done: index {result['index']}, story {result['story']}, "
          f"rendered to {result['render']} (story.mp4, storyboard.png, manifest.json)")
    print("tiny models are random, so the frames are noise-like: the demo proves the plumbing. "
          "With pretrained weights: storyreel render STORY.yaml --index INDEX --out OUT --models default")
    return 0
