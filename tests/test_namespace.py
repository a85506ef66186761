"""One namespace: the installed project is `storyreel.*` only, and a user's own `index.py` or `depth.py`
next to their notebook cannot shadow it. Run as a user would: a fresh interpreter in a folder
outside the repo, without PYTHONPATH."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("core", "synthetic", "index", "retrieval", "depth", "generation", "training", "story", "ui", "cli")


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_stage_packages_import_under_storyreel(tmp_path):
    proc = python("-c", "import " + ", ".join(f"storyreel.{name}" for name in STAGES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_no_top_level_stage_module_is_installed(tmp_path):
    code = (f"for name in {STAGES!r}:\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ModuleNotFoundError as err:\n"
            "        print(type(err).__name__, err.name)\n"
            "    else:\n"
            "        print('imported', name)\n")
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"ModuleNotFoundError {name}" for name in STAGES]
    assert "ModuleNotFoundError: No module named 'index'" in python("-c", "import index", cwd=tmp_path).stderr


def test_users_own_index_py_and_depth_py_do_not_shadow_storyreel(tmp_path):
    for name in STAGES:
        (tmp_path / f"{name}.py").write_text('raise SystemExit("shadowed")\n')
    assert python("-c", "import index", cwd=tmp_path).stderr == "shadowed\n"  # the shadowing files are live
    cli = python("-m", "storyreel", "--help", cwd=tmp_path)
    assert cli.returncode == 0 and cli.stdout.startswith("usage: storyreel"), cli.stderr
    api = python("-c", "from storyreel.retrieval import search; print(search.__module__)", cwd=tmp_path)
    assert api.returncode == 0 and api.stdout == "storyreel.retrieval.query\n", api.stderr


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def top_level_stage_imports(path: Path) -> list[str]:
    """`import index`, `from depth.x import y`, ... in a file (absolute imports of a bare stage name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {name}" for name in names
                  if name.split(".")[0] in STAGES]
    return found


@pytest.mark.parametrize("folders", [("tests", "scripts"), ("storyreel", *STAGES)], ids=["tests+scripts", "packages"])
def test_code_imports_stages_only_through_storyreel(folders):
    files = python_files(*folders)
    assert len(files) > 5
    assert [hit for path in files for hit in top_level_stage_imports(path)] == []
