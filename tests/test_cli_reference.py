"""docs/CLI.md stays the current contract: every command and flag of the parser is documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from storyreel.cli import build_parser

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"


def leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    """(command words, parser) for every runnable command (those with no subcommands below them)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaf_commands(sub, (*prefix, name))


def test_every_command_and_flag_is_in_the_reference():
    sections = re.split(r"^### ", REFERENCE.read_text(), flags=re.M)[1:]
    documented = {section.splitlines()[0].strip(): section for section in sections}
    commands = list(leaf_commands(build_parser()))
    # A flag every command has (--quiet) is documented once, in "Conventions".
    conventions = REFERENCE.read_text().split("## Conventions", 1)[1].split("\n## ", 1)[0]
    everywhere = set.intersection(*({o for a in parser._actions for o in a.option_strings} for _, parser in commands))
    assert {"storyreel " + " ".join(words) for words, _ in commands} == set(documented)  # no stale sections
    missing = []
    for words, parser in commands:
        title = "storyreel " + " ".join(words)
        section = documented.get(title)
        if section is None:
            missing.append(title)
            continue
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = action.option_strings or [action.dest]  # a positional: its name, e.g. VIDEO_DIR
            where = conventions if set(names) <= everywhere else section
            if not any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", where, re.I) for n in names):
                missing.append(f"{title} {names[0]}")
    assert missing == []
