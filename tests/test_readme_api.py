"""The README's "Python API" example runs as written (tiny preset, offline)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "(8, 64, 64, 3) 2"  # 8 frames; τ = 0.5 of 4 steps runs the ControlNet twice
    assert printed[-1] == "{'output': 'story.mp4', 'storyboard': 'storyboard.png', 'frames': 16}"
    assert (tmp_path / "my_pipeline" / "model_index.json").is_file()
    assert {"story.mp4", "storyboard.png", "manifest.json"} <= {p.name for p in (tmp_path / "my_story").iterdir()}
