"""The README's Python example runs as written (tiny preset, offline) and uses only the public API."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    """The README's one ```python block."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert len(blocks) == 1, f"README.md should hold one Python example, found {len(blocks)}"
    return blocks[0]


def test_the_readme_example_imports_only_front_doors():
    code = readme_python_example()
    modules = re.findall(r"^(?:from|import) (\S+)", code, re.M)
    assert modules and all(m == "storyreel" or m.count(".") == 1 for m in modules), modules  # storyreel.X only
    assert not any(m.startswith(("storyreel.testing", "tests")) for m in modules)
    assert 'preset="tiny"' in code  # runs offline, in seconds


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_python_example()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "(8, 64, 64, 3) 2"  # 8 frames; τ = 0.5 of 4 steps runs the ControlNet twice
    assert printed[-1] == "16 ['plots/00.mp4']"  # one plot of the preset's 16 frames
    assert (tmp_path / "my_pipeline" / "model_index.json").is_file()
    assert {"story.mp4", "storyboard.png", "manifest.json"} <= {p.name for p in (tmp_path / "my_story").iterdir()}
