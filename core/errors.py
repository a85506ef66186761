"""Errors every storyreel package raises for problems the *user* can fix.

The CLI turns these into one line on stderr and exit status 1; anything else is a bug and keeps
its traceback. They live in the core, below the dependency chain (index → retrieval → depth →
generation), so every package can import them.
"""


class UserError(Exception):
    """Bad input the user can fix: name the file/field and say what to do."""


class UsageError(UserError):
    """Arguments that do not fit together (the CLI exits 2, as argparse does for bad usage)."""


class MissingWeightsError(UserError):
    """Pretrained weights are not on disk; the message says which files, where we looked, how to get them."""
