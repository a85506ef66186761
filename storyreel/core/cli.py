"""How a storyreel command is declared: one call gives it the flags every command shares.

    parser = add_command(commands, "depth", _run_depth, "stable depth of a clip", models=MODELS_HELP)
    parser.add_argument("source")   # then the command's own arguments

Every command that loads models takes `--models PRESET`, every command that prints results takes
`--json` and every command takes `--quiet` (docs/CLI.md), worded the same everywhere; `run(args) -> int`
is what storyreel/cli.py calls.
"""

from __future__ import annotations

MODELS_HELP = "model preset: tiny or default (else $STORYREEL_MODELS, else default)"
JSON_HELP = "print one JSON document on stdout"
QUIET_HELP = "no progress bars or notes on stderr (errors and warnings still print)"


def add_command(commands, name: str, run, help: str, *, description: str | None = None,
                models: str | None = MODELS_HELP, json: str | None = JSON_HELP):
    """A subcommand of `commands` (an argparse subparsers action): --quiet, and --models and --json unless None."""
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    if models:
        parser.add_argument("--models", metavar="PRESET", help=models)
    if json:
        parser.add_argument("--json", action="store_true", help=json)
    parser.set_defaults(run=run)
    return parser
