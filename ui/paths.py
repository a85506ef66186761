"""Which folders the web app may read and write: the roots it was started with, nothing else.

A path typed into the page is resolved (`~`, `..` and symbolic links followed) and refused unless it
lies inside one of the roots: the index, story and output folders given on the command line and any
`--root`. Relative paths are taken relative to the first root, so the page never depends on the
folder the server happened to start in.
"""

from __future__ import annotations

from pathlib import Path

from storyreel.core.errors import UserError


class Roots:
    """The folders the app was started with; `resolve(text, what)` turns typed text into a path inside them."""

    def __init__(self, folders):
        seen: list[Path] = []
        for folder in folders:
            path = Path(folder).expanduser().resolve()
            if path not in seen:
                seen.append(path)
        if not seen:
            raise UserError("the ui needs at least one root folder (--index, --story, --out or --root)")
        self.folders = tuple(seen)

    def resolve(self, text, what: str) -> Path:
        """The absolute path `text` names; UserError (one line) if it is empty or outside every root."""
        text = str(text or "").strip()
        if not text:
            raise UserError(f"{what}: type a path")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.folders[0] / path
        path = path.resolve()
        if not any(path == root or root in path.parents for root in self.folders):
            raise UserError(f"{what} {path} is outside the folders this app may use "
                            f"({', '.join(str(r) for r in self.folders)}); restart `storyreel ui` with --root")
        return path

    def __contains__(self, path) -> bool:
        path = Path(path).resolve()
        return any(path == root or root in path.parents for root in self.folders)
