"""How a storyreel command is declared: one call gives it the flags every command shares.

    parser = add_command(commands, "depth", _run_depth, "stable depth of a clip", models=MODELS_HELP,
                         components=("depth",))
    parser.add_argument("source")   # then the command's own arguments

Every command that loads models takes `--models PRESET`, `--device` and `--dtype`, every command that
prints results takes `--json` and every command takes `--quiet` (docs/CLI.md), worded the same
everywhere; `components` adds the flags that swap one component of the preset (`--clip`,
`--depth-model`, `--base`, ...: core/models.py COMPONENTS and `with_overrides`). `run(args) -> int` is what
cli/__init__.py calls.
"""

from __future__ import annotations

from storyreel.core.devices import DEVICE_HELP, DTYPE_HELP
from storyreel.core.models import COMPONENTS

MODELS_HELP = ("model preset: a name (tiny, default, yours: `storyreel models`) or a preset .json file "
               "(docs/presets.md); else $STORYREEL_MODELS, else default")
JSON_HELP = "print one JSON document on stdout"
QUIET_HELP = "no progress bars or notes on stderr (errors and warnings still print)"


def add_command(commands, name: str, run, help: str, *, description: str | None = None,
                models: str | None = MODELS_HELP, json: str | None = JSON_HELP, components: tuple[str, ...] = ()):
    """A subcommand of `commands` (an argparse subparsers action): --quiet, and --models and --json unless None.

    A command with --models loads models, so it also takes --device and --dtype. `components`: names of
    core/models.py COMPONENTS ("generator" stands for base, motion adapter, ControlNet and scheduler).
    """
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    if models:
        parser.add_argument("--models", metavar="PRESET", help=models)
    if models:
        parser.add_argument("--device", metavar="DEVICE", help=DEVICE_HELP)
        parser.add_argument("--dtype", metavar="DTYPE", help=DTYPE_HELP)
    for wanted in components:
        for c in COMPONENTS:
            if c.name == wanted or (wanted == "generator" and c.generator):
                parser.add_argument(c.flag, dest=c.dest, metavar=c.metavar, help=c.help)
    if json:
        parser.add_argument("--json", action="store_true", help=json)
    parser.set_defaults(run=run)
    return parser
