"""How a storyreel command is declared: one call gives it the flags every command shares.

    parser = add_command(commands, "depth", _run_depth, "stable depth of a clip", models=MODELS_HELP,
                         components=("depth",))
    parser.add_argument("source")   # then the command's own arguments

Every command that loads models takes `--models PRESET`, `--device` and `--dtype`, every command that
prints results takes `--json` and every command takes `--quiet` (docs/CLI.md), worded the same
everywhere; `components` adds the flags that swap one component of the preset (`--clip`,
`--depth-model`, `--base`, ...: core/models.py `with_overrides`). `run(args) -> int` is what
cli/__init__.py calls.
"""

from __future__ import annotations

from storyreel.core.devices import DEVICE_HELP, DTYPE_HELP

MODELS_HELP = "model preset: tiny or default (else $STORYREEL_MODELS, else default)"
JSON_HELP = "print one JSON document on stdout"
QUIET_HELP = "no progress bars or notes on stderr (errors and warnings still print)"
# flag, dest, help of each swappable component (dests: core/models.py COMPONENT_ARGS)
COMPONENT_HELP = {
    "clip": ("--clip", "clip_model", "CLIP instead of the preset's: an open_clip NAME:PRETRAINED_TAG "
             "(ViT-B-16:laion2b_s34b_b88k) or hf-hub:ORG/REPO"),
    "depth": ("--depth-model", "depth_model", "depth model instead of the preset's: a MiDaS registry name, or a "
              "transformers depth-estimation model (repo id or local folder, e.g. Depth Anything V2)"),
    "base": ("--base", "base", "SD1.5-layout base model instead of the preset's: a repo id, a local diffusers "
             "folder, or a single .safetensors/.ckpt checkpoint (ComfyUI/A1111)"),
    "motion_adapter": ("--motion-adapter", "motion_adapter", "AnimateDiff motion adapter: repo id or local folder"),
    "controlnet": ("--controlnet", "controlnet", "depth ControlNet: repo id or local folder"),
    "scheduler": ("--scheduler", "scheduler", "diffusers scheduler class to sample with, e.g. EulerDiscreteScheduler"),
}
GENERATOR = ("base", "motion_adapter", "controlnet", "scheduler")


def add_command(commands, name: str, run, help: str, *, description: str | None = None,
                models: str | None = MODELS_HELP, json: str | None = JSON_HELP, device: bool | None = None,
                components: tuple[str, ...] = ()):
    """A subcommand of `commands` (an argparse subparsers action): --quiet, and --models and --json unless None.

    `device` (default: whenever there is --models): add --device and --dtype. `components`: keys of
    COMPONENT_HELP ("generator" stands for base, motion adapter, ControlNet and scheduler).
    """
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    if models:
        parser.add_argument("--models", metavar="PRESET", help=models)
    if device if device is not None else bool(models):
        parser.add_argument("--device", metavar="DEVICE", help=DEVICE_HELP)
        parser.add_argument("--dtype", metavar="DTYPE", help=DTYPE_HELP)
    for component in components:
        for key in GENERATOR if component == "generator" else (component,):
            flag, dest, text = COMPONENT_HELP[key]
            parser.add_argument(flag, dest=dest, metavar="MODEL" if key != "scheduler" else "CLASS", help=text)
    if json:
        parser.add_argument("--json", action="store_true", help=json)
    parser.set_defaults(run=run)
    return parser
