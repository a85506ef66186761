"""`storyreel` command line: collects each package's subcommands and runs one.

No logic lives here. Each module of this package (one per command group: cli/index.py, cli/search.py,
cli/depth.py, cli/generate.py, cli/character.py, cli/story.py, cli/models.py, cli/ui.py) has
`add_commands(subparsers)`, which registers its commands with a `run(args) -> int` function; heavy
imports (torch, faiss, ...) happen inside `run`, so `storyreel --help` stays fast. Contract:
docs/CLI.md (exit 0 ok, 1 user error, 2 bad usage: argparse or UsageError). `main` is the boundary
no traceback crosses (see its docstring).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback

COMMAND_MODULES = ("storyreel.cli.index", "storyreel.cli.search", "storyreel.cli.depth", "storyreel.cli.generate",
                   "storyreel.cli.character", "storyreel.cli.story", "storyreel.cli.models", "storyreel.cli.ui")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyreel", description="Retrieval-augmented storytelling video.")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an unexpected error (allowed anywhere on the line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. No exception reaches the user as a traceback: a UserError is its one line, anything
    else one line plus the file holding the full traceback (`--debug` prints it instead)."""
    from storyreel.core.errors import UsageError, UserError
    from storyreel.core.progress import close_open_bars, setup_cli_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _take_debug_flag(argv) or os.environ.get("STORYREEL_DEBUG", "") not in ("", "0")
    args = build_parser().parse_args(argv)
    setup_cli_logging(quiet=args.quiet)  # library messages (logger "storyreel") become stderr lines
    try:
        try:
            return args.run(args) or 0
        finally:
            close_open_bars()  # a bar a failed command left open would swallow the start of the error line
    except UsageError as err:
        print(f"storyreel: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"storyreel: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storyreel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `storyreel ... | head`: the reader left, nothing to report
        return 1
    except Exception as err:  # noqa: BLE001 - the safety net: a bug, reported in one line
        if debug:
            traceback.print_exc()
        else:
            print(f"storyreel: error: {_unexpected(err)}", file=sys.stderr)
        return 1


def _take_debug_flag(argv: list[str]) -> bool:
    """Remove `--debug` (allowed anywhere before a `--`) from argv; True if it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--debug" in argv[:end]
    argv[:end] = [a for a in argv[:end] if a != "--debug"]
    return found


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _unexpected(err: BaseException) -> str:
    """One line for an exception no check caught: what it was, and where its traceback went."""
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        what = ("ran out of memory; lower --frames, --height/--width or --steps "
                "(or use --cpu-offload on a GPU)")
    else:
        what = f"unexpected {type(err).__name__}: {_one_line(err)[:300]}"
    try:
        fd, path = tempfile.mkstemp(prefix="storyreel-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"storyreel {' '.join(sys.argv[1:])}\n")
            traceback.print_exception(type(err), err, err.__traceback__, file=fh)
        where = f"full traceback in {path}"
    except OSError:
        where = "no traceback file could be written"
    return f"{what} ({where}; rerun with --debug to print it)"
