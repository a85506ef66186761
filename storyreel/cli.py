"""`storyreel` command line: collects each package's subcommands and runs one.

No logic lives here. Each package's `cli.py` (and storyreel/models_cli.py for `storyreel models`) has
`add_commands(subparsers)`, which registers its commands with a `run(args) -> int` function; heavy
imports (torch, faiss, ...) happen inside `run`, so `storyreel --help` stays fast. Contract:
docs/CLI.md (exit 0 ok, 1 user error, 2 bad usage: argparse or UsageError).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("storyreel.index.cli", "storyreel.retrieval.cli", "storyreel.depth.cli", "storyreel.generation.cli",
                   "storyreel.models_cli", "storyreel.ui.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyreel", description="Retrieval-augmented storytelling video.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from storyreel.core.errors import UsageError, UserError
    from storyreel.core.progress import close_open_bars, setup_cli_logging

    args = build_parser().parse_args(argv)
    setup_cli_logging(quiet=args.quiet)  # library messages (logger "storyreel") become stderr lines
    try:
        try:
            return args.run(args) or 0
        finally:
            close_open_bars()  # a bar a failed command left open would swallow the start of the error line
    except UsageError as err:
        print(f"storyreel: error: {err}", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"storyreel: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storyreel: interrupted", file=sys.stderr)
        return 130
