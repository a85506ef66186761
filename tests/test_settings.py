"""GenerationSettings: one object from the preset through story files and `plan` to the pipeline."""

from __future__ import annotations

import pytest
import yaml
from pack_headers import write_pack_header

from storyreel.cli import main
from storyreel.core.errors import UserError
from storyreel.core.models import get_preset
from storyreel.generation import GenerationSettings
from storyreel.story.format import load_story, plot_settings


def test_preset_decides_size_frames_steps_and_cfg_and_flags_override():
    default = GenerationSettings.for_preset("default")
    assert (default.height, default.width, default.frames, default.steps, default.cfg) == (512, 512, 16, 25, 7.5)
    tiny = GenerationSettings.for_preset("tiny", steps=2, tau=None)  # None: the flag was not given
    assert (tiny.height, tiny.width, tiny.steps, tiny.tau) == (64, 64, 2, 0.5)
    assert GenerationSettings.for_preset(get_preset("tiny")) == GenerationSettings.for_preset("tiny")
    with pytest.raises(TypeError, match="unknown generation settings: guidance"):
        default.replace(guidance=3)


@pytest.mark.parametrize("changes, message", [
    ({"frames": 0}, "frames must be a positive number (got 0)"),
    ({"width": 60}, "height and width must be positive multiples of 8 (got 512x60)"),
    ({"tau": 1.5}, "tau is a fraction of the schedule between 0 and 1 (got 1.5)"),
    ({"long": "loop"}, "unknown long-clip mode 'loop'; choose one of overlap, vidrd, freenoise"),
    ({"overlap_frames": 16}, "overlap_frames (16) must be at least 0 and below window_frames (16)"),
])
def test_check_names_the_setting(changes, message):
    with pytest.raises(UserError) as err:
        GenerationSettings.for_preset("default", **changes).check()
    assert str(err.value) == message


def test_story_without_defaults_renders_with_the_presets_settings(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("plots:\n  - text: A dog runs.\n  - text: A cat sits.\n    frames: 8\n")
    story = load_story(path)
    first, second = plot_settings(story, 0, "default"), plot_settings(story, 1, "tiny")
    assert (first.height, first.steps, first.cfg, first.frames, first.seed) == (512, 25, 7.5, 16, 0)
    assert (second.height, second.steps, second.frames, second.seed) == (64, 4, 8, 1)


@pytest.mark.parametrize("preset, size, steps", [("default", 512, 25), ("tiny", 64, 4)])
def test_plan_writes_the_presets_settings(tmp_path, capsys, preset, size, steps):
    prose = tmp_path / "story.txt"
    prose.write_text("Rex runs to the lake. Then he swims.")
    out = tmp_path / "story.yaml"
    write_pack_header(tmp_path / "rex.safetensors", "dog")  # load_story checks the pack exists
    assert main(["plan", str(prose), "--out", str(out), "--models", preset, "--character", "Rex=<rex>"]) == 0
    defaults = yaml.safe_load(out.read_text())["defaults"]
    assert defaults == {"frames": 16, "fps": 8.0, "speed": 1.0, "height": size, "width": size, "steps": steps,
                        "cfg": 7.5, "tau": 0.5, "seed": 0, "structure_scale": 1.0}
    assert load_story(out).defaults == defaults  # and it reads back as written
    capsys.readouterr()


@pytest.mark.parametrize("flags, code, message", [
    (["--backend", "t2v-zero", "--motion-strength", "nan"], 1,
     "storyreel: error: motion_strength must be a finite number from 0 to 1000 (got nan)"),
    (["--backend", "t2v-zero", "--motion-strength", "-2"], 1,
     "storyreel: error: motion_strength must be from 0 to 1000 (got -2)"),
    (["--backend", "t2v-zero", "--t0", "5", "--t1", "3"], 1,
     "storyreel: error: t0 and t1 are step indices with 0 <= t0 < t1 < steps (4); give both or neither "
     "(got t0=5, t1=3)"),
    (["--backend", "t2v-zero", "--motion-field", "1"], 2, "argument --motion-field: invalid dx_dy value: '1'"),
    (["--backend", "sora"], 2, "argument --backend: invalid choice: 'sora'"),
])
def test_bad_backend_settings_get_one_line_before_any_model_loads(run_cli, tmp_path, monkeypatch, flags, code,
                                                                   message):
    from storyreel.generation import generate

    monkeypatch.setattr(generate, "ClipGenerator", None)  # any model load would fail loudly
    # walk.mp4 does not exist: the settings are checked before the source, the output and any model.
    proc = run_cli("generate", "--prompt", "a cat", "--structure", tmp_path / "walk.mp4", "--out",
                   tmp_path / "clip.mp4", "--models", "tiny", *flags)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert message in lines[-1], proc.stderr  # usage errors (2) print argparse's usage lines first
    assert len(lines) == 1 if code == 1 else lines[0].startswith("usage: storyreel generate")
