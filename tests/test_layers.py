"""The house: `storyreel.X` lives in the top-level folder `X/`, and the layers depend one way.

The layers form a branching graph (each names the layers it builds on directly; what those build on
is allowed too):

    core -> synthetic
    core -> index -> retrieval
    core -> depth
    core -> toyworld
    {index, depth} -> generation -> training (+ retrieval, toyworld) -> story (+ synthetic) -> ui -> cli

`testing` (helpers the tests and benchmarks share) sits above everything and nothing imports it.
Every import of a storyreel module (module level or inside a function) is read from the source with
ast, so a lazy import cannot hide a backwards dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
BUILDS_ON = {
    "core": set(),
    "synthetic": {"core"},
    "index": {"core"},
    "retrieval": {"index"},
    "depth": {"core"},
    "toyworld": {"core"},
    "generation": {"index", "depth"},
    "training": {"generation", "retrieval", "toyworld"},
    "story": {"training", "synthetic", "toyworld"},
    "ui": {"story"},
    "cli": {"ui"},
    "testing": {"cli"},
}


def below(layer: str) -> set[str]:
    """Every layer `layer` may import: the ones it builds on, and theirs."""
    found = set()
    for lower in BUILDS_ON[layer]:
        found |= {lower} | below(lower)
    return found


def storyreel_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("storyreel.")}


def backwards_imports(root: Path) -> list[str]:
    """'FILE imports MODULE' for each import of a layer that is not below the file's own layer."""
    wrong = []
    for layer in BUILDS_ON:
        allowed = below(layer) | {layer}
        for path in sorted((root / layer).rglob("*.py")):
            for module in sorted(storyreel_imports(path)):
                if module.split(".")[1] not in allowed:
                    wrong.append(f"{path.relative_to(root)} imports {module}")
    return wrong


def test_the_layers_form_one_graph_without_cycles():
    assert "testing" not in set().union(*BUILDS_ON.values())
    for layer in BUILDS_ON:
        assert layer not in below(layer), layer


def test_each_layer_imports_only_the_layers_below_it():
    assert backwards_imports(REPO) == []


def test_a_planted_backwards_import_fails(tmp_path):
    for layer in BUILDS_ON:
        (tmp_path / layer).mkdir()
    (tmp_path / "index" / "runner.py").write_text("def f():\n    from storyreel.story import render_story\n")
    (tmp_path / "depth" / "model.py").write_text("import storyreel.index.embed\n")
    (tmp_path / "story" / "render.py").write_text("from storyreel.index import open_index\n")  # downwards: fine
    assert sorted(backwards_imports(tmp_path)) == ["depth/model.py imports storyreel.index.embed",
                                                   "index/runner.py imports storyreel.story"]


def test_every_package_lives_in_the_folder_of_its_name():
    """`storyreel.X.Y` is `X/Y/`, as imported by a fresh interpreter outside the repo."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {str(p.parent.relative_to(REPO)).replace(os.sep, ".") for p in REPO.glob("*/**/__init__.py")
               if p.parts[len(REPO.parts)] not in ("tests", "scripts", "build")}
    assert {p.removeprefix("storyreel.") for p in packages} - {"storyreel"} == on_disk - {"storyreel"}
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    print(importlib.import_module(name).__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, *packages], capture_output=True, text=True, cwd="/",
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for package, file in zip(packages, proc.stdout.split()):
        folder = package.removeprefix("storyreel.").replace(".", "/") if package != "storyreel" else "storyreel"
        assert Path(file) == REPO / folder / "__init__.py", package
    # storyreel/ is only the namespace's front door.
    assert sorted(p.name for p in (REPO / "storyreel").glob("*.py")) == ["__init__.py", "__main__.py"]
