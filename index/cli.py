"""`storyreel` commands of the `index` package (see storyreel/cli.py and ../shared/CLI.md)."""


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
