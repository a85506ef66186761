"""The docs stay true to the tree: every repo path they cite exists, and the README stays short.

A cited path is a repo-relative path that starts with a top-level folder of the repo (`story/render.py`,
`docs/CLI.md`, `scripts/bench_*.py`), or a bare Markdown file name (which must be at the top or in docs/). It is
looked for in README.md, docs/*.md (also their relative links, `[text](CLI.md)`) and in the comments
and docstrings of every .py file. User-example paths (`my_index/`, `~/videos`) start with no top-level
folder and are not checked.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
NOT_SOURCE = ("build", "dist", "out")  # build outputs that may lie in a checkout


def top_level_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in NOT_SOURCE
                  and not p.name.startswith((".", "_")) and not p.name.endswith(".egg-info")) + [".ci"]


def path_pattern(root: Path) -> re.Pattern:
    """`FOLDER/...` for a top-level FOLDER, not inside a longer path or word (`my_index/`, `x/index/`)."""
    folders = "|".join(re.escape(name) for name in top_level_folders(root))
    return re.compile(rf"(?<![\w.~/-])(?:{folders})/[\w.*/-]*|(?<![\w./~-])[A-Z][\w-]*\.md\b")


def cited_paths(text: str, pattern: re.Pattern) -> set[str]:
    return {m.group(0).rstrip(".,;:-") for m in pattern.finditer(text)}


def python_prose(path: Path) -> str:
    """Every comment and docstring of a .py file, one text."""
    source = path.read_text()
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    docstrings = [ast.get_docstring(node, clean=False) or "" for node in ast.walk(ast.parse(source, str(path)))
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return "\n".join(comments + docstrings)


def exists(root: Path, cited: str) -> bool:
    if "/" not in cited:  # a bare Markdown file name
        return (root / cited).is_file() or (root / "docs" / cited).is_file()
    return any(root.glob(cited.rstrip("/"))) if "*" in cited else (root / cited).exists()


def markdown_links(path: Path) -> list[str]:
    """Relative link targets of a Markdown file (`[text](target)`), anchors dropped."""
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:|#", t) and t.split("#", 1)[0]]


def documents(root: Path) -> list[Path]:
    markdown = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    python = [p for folder in top_level_folders(root) for p in sorted((root / folder).rglob("*.py"))]
    return [p for p in markdown if p.is_file()] + python


def dead_paths(root: Path) -> list[str]:
    """'FILE: PATH' for every cited path that does not exist."""
    pattern = path_pattern(root)
    dead = []
    for doc in documents(root):
        # A Markdown link's target is relative to its file: checked below, not as a repo-relative path.
        text = python_prose(doc) if doc.suffix == ".py" else re.sub(r"\]\([^)]*\)", "]", doc.read_text())
        dead += [f"{doc.relative_to(root)}: {p}" for p in sorted(cited_paths(text, pattern)) if not exists(root, p)]
        if doc.suffix == ".md":
            dead += [f"{doc.relative_to(root)}: {t}" for t in markdown_links(doc)
                     if not (doc.parent / t).resolve().exists()]
    return dead


def test_every_cited_path_exists():
    assert dead_paths(REPO) == []


def test_a_dead_path_is_found_and_an_example_path_is_not(tmp_path):
    (tmp_path / "story").mkdir()
    (tmp_path / "story" / "render.py").write_text(
        '"""Renders (see story/render.py and story/gone.py; user folders like my_index/ and ~/videos)."""\n'
        "x = 1  # REFERENCE.md, scripts/bench_*.py and storyreel/story/render.py\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("[here](b.md), [there](../story/render.py), `docs/a.md`, docs/none.md.\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "storyreel").mkdir()
    assert sorted(dead_paths(tmp_path)) == [
        "docs/a.md: b.md", "docs/a.md: docs/none.md", "story/render.py: REFERENCE.md",
        "story/render.py: scripts/bench_*.py", "story/render.py: story/gone.py",
        "story/render.py: storyreel/story/render.py"]


def test_the_readme_is_a_five_minute_read():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
