"""`storyreel plan`, `storyreel render` and `storyreel demo` (see cli/__init__.py and docs/CLI.md).

Argument parsing and printing only: the work is done by storyreel.story; heavy imports happen
inside the `_run_*` functions.
"""

from __future__ import annotations

import json
import sys

from storyreel.cli.common import add_command
from storyreel.cli.generate import add_backend_flags, add_recipe_flag


def add_commands(commands) -> None:
    """Register plan, render and demo on the top-level parser's subparsers."""
    _add_plan(commands)
    _add_render(commands)
    _add_demo(commands)


# -- plan --------------------------------------------------------------------------------------------


def _add_plan(commands) -> None:
    parser = add_command(commands, "plan", _run_plan, "prose story -> story file of single-event plots",
                         models=None, json="print the plan as one JSON document")
    # Planning loads no model, so --models here comes without --device and --dtype.
    parser.add_argument("--models", metavar="PRESET", help="model preset whose size, frames, steps and cfg the "
                        "story's defaults get (else $STORYREEL_MODELS, else default)")
    parser.add_argument("story", metavar="STORY.txt", help="the story as prose (plain text)")
    parser.add_argument("--out", required=True, metavar="STORY.yaml", help="story file to write")
    parser.add_argument("--character", action="append", default=[], metavar="NAME=TOKEN[=PACK]",
                        help="a character: its name in the prose, its token, optionally its pack file "
                             "(default TOKEN.safetensors beside --out); repeatable")
    parser.add_argument("--layout", action="store_true", help="rule plans: give each plot's characters side-by-side "
                        "boxes, which turns on layout control (an --llm plan always has boxes)")
    parser.add_argument("--llm", metavar="URL", help="plan with an OpenAI-compatible chat-completions "
                        "server at URL (nothing is sent without this); $STORYREEL_LLM_API_KEY is sent as "
                        "a bearer token if set")
    parser.add_argument("--llm-model", metavar="NAME", help="model name for --llm")
    parser.add_argument("--llm-timeout", type=float, default=120.0, metavar="S",
                        help="seconds one request may take in all, reply included (default 120; at most 3600)")


def _run_plan(args) -> int:
    import dataclasses
    from pathlib import Path

    from storyreel.core.files import check_output_path
    from storyreel.story.format import plot_to_dict
    from storyreel.story.planner import LLMOptions, PlanOptions, parse_cast, plan_story, read_prose, write_story

    story_path, out = Path(args.story), Path(args.out)
    check_output_path(out, "--out", create_parents=True)
    llm = LLMOptions(args.llm, args.llm_model or "", args.llm_timeout) if args.llm else None
    cast = parse_cast(args.character)  # packs relative to where the command runs
    story = plan_story(read_prose(story_path), cast, PlanOptions(title=story_path.stem, preset=args.models, llm=llm,
                                                                      layout=args.layout))
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
    parser.add_argument("story", metavar="STORY.yaml", help="story file (YAML or JSON; see docs/stories.md)")
    parser.add_argument("--index", required=True, help="index folder to retrieve source clips from")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (rerun to resume)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until they run (GPU)")
    add_backend_flags(parser)  # for plots whose story file names no backend
    add_recipe_flag(parser)  # for a story file that names no recipe
    parser.add_argument("--force", action="store_true",
                        help="render into a non-empty folder that is not a storyreel render (its story.mp4, "
                             "manifest.json and plots/ may be replaced)")


def _run_render(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import COMPONENTS
    from storyreel.core.progress import Progress
    from storyreel.story.manifest import summary_table
    from storyreel.story.render import RenderOptions, render_story

    device, dtype = device_and_dtype(args)
    overrides = {c.name: getattr(args, c.dest) for c in COMPONENTS}
    options = RenderOptions(preset=args.models, backend=args.backend, recipe=args.recipe, overrides=overrides,
                            device=device, dtype=dtype, cpu_offload=args.cpu_offload, force=args.force)
    manifest = render_story(args.story, args.index, args.out, options, progress=Progress("render", quiet=args.quiet))
    if not args.quiet:
        print(summary_table(manifest.plots), file=sys.stderr)
    if args.json:
        print(json.dumps(manifest.to_dict()))
    else:
        print(f"wrote {args.out}/story.mp4 ({manifest.frames} frames), storyboard.png, manifest.json")
    return 0


def _add_demo(commands) -> None:
    from storyreel.story.demo import DEMO_PRESETS

    parser = add_command(commands, "demo", _run_demo, "the whole chain on toy-world videos with the toy models "
                         "(offline)", models=None, json=None)
    parser.add_argument("--out", default="storyreel-demo", help="output folder (default ./storyreel-demo)")
    parser.add_argument("--models", choices=DEMO_PRESETS, default=DEMO_PRESETS[0],
                        help="toy: models trained on the toy world (default); tiny: random models, for smoke runs")


def _run_demo(args) -> int:
    from storyreel.core.files import check_output_path
    from storyreel.core.progress import Progress
    from storyreel.story.demo import run_demo

    check_output_path(args.out, "--out", folder=True, create_parents=True)
    result = run_demo(args.out, args.models, Progress("demo", quiet=args.quiet))
    print(f"demo done: index {result['index']}, story {result['story']}, "
          f"rendered to {result['render']} (story.mp4, storyboard.png, manifest.json)")
    if args.models == "tiny":
        print("tiny models are random, so the frames are noise-like: the demo proves the plumbing.")
    else:
        print("look at storyboard.png: each row is a retrieved clip, its depth and the frames made with Pip's pack "
              "(docs/toyworld.md says what the toy models do and do not do yet).")
    print("With pretrained weights: storyreel render STORY.yaml --index INDEX --out OUT --models default")
    return 0
