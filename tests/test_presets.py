"""Preset files (core/preset_files.py, docs/presets.md): a user's own preset, named by path or found in
the user folder, runs `storyreel generate`, `render` and `models`; a bad field is one line naming the
file and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from storyreel.core.errors import UserError
from storyreel.core.models import get_preset, list_presets

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def user_presets(tmp_path_factory):
    """A user preset folder holding `mine.json`: tiny's CLIP and depth (`extends: tiny`), a generator read
    from the tiny components this fixture saves (paths relative to the preset file), 4 frames, 2 steps;
    and `single.json`: the same with the base model as one single-file checkpoint."""
    from single_file import write_single_file

    from storyreel.generation.tiny import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("presets")
    write_tiny_checkpoint(root / "weights", seed=1)
    write_single_file(root / "weights" / "base", root / "weights" / "base.safetensors")
    (root / "presets").mkdir()
    generator = {"base": "../weights/base", "motion_adapter": "../weights/motion_adapter",
                 "controlnet": "../weights/controlnet", "frames": 4, "steps": 2}
    (root / "presets" / "mine.json").write_text(json.dumps({
        "description": "my fine-tune", "extends": "tiny", "generator": generator}))
    (root / "presets" / "single.json").write_text(json.dumps({
        "extends": "tiny", "generator": {**generator, "base": "../weights/base.safetensors"}}))
    return root


def test_a_user_preset_runs_generate_render_and_models(run_cli, user_presets, tmp_path):
    from storyreel.core.writers import write_video
    from storyreel.synthetic import make_corpus

    folder, weights = user_presets / "presets", (user_presets / "weights").resolve()
    env = {**ONE_THREAD, "STORYREEL_PRESETS": folder}

    proc = run_cli("models", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    mine = json.loads(proc.stdout)["presets"]["mine"]
    assert mine["file"] == str((folder / "mine.json").resolve()) and mine["description"] == "my fine-tune"
    assert mine["components"]["base"] == {**mine["components"]["base"], "id": str(weights / "base"),
                                          "present": True, "where": f"local {weights / 'base'}"}
    assert mine["components"]["clip"]["id"] == "open_clip:tiny:seed0"  # tiny's, from `extends`
    assert mine["defaults"] == {"height": 64, "width": 64, "frames": 4, "steps": 2, "cfg": 7.5, "train_size": 64}
    assert list(json.loads(proc.stdout)["presets"]) == ["default", "tiny", "toy", "mine", "single"]
    assert "mine  " + str((folder / "mine.json").resolve()) in run_cli("models", env=env).stdout

    # generate, the preset given by its path: the preset's frames and steps, its own components
    depth = np.zeros((4, 64, 64, 3), np.uint8)
    depth[:, :, :32] = 200
    write_video(depth, tmp_path / "depth.mp4", metadata={"kind": "depth"})
    proc = run_cli("generate", "--prompt", "a cat", "--structure", tmp_path / "depth.mp4", "--out", tmp_path / "gen",
                   "--models", folder / "mine.json", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["components"]["controlnet"] == str(weights / "controlnet")
    frames = sorted((tmp_path / "gen").glob("*.png"))
    assert len(frames) == 4
    # the same weights with the base as a single file (read with the configs of tiny, which it extends)
    proc = run_cli("generate", "--prompt", "a cat", "--structure", tmp_path / "depth.mp4", "--out", tmp_path / "one",
                   "--models", "single", env=env)
    assert proc.returncode == 0, proc.stderr
    for folder_frame, file_frame in zip(frames, sorted((tmp_path / "one").glob("*.png")), strict=True):
        assert np.array_equal(np.asarray(Image.open(folder_frame)), np.asarray(Image.open(file_frame)))

    # index build by the preset's name (user folder), render with the story file's `models: {preset: FILE}`
    make_corpus(tmp_path / "videos", num_videos=1, shots_per_video=1, shot_seconds=1.5, size=(64, 48), fps=8)
    proc = run_cli("index", "build", tmp_path / "videos", "--index", tmp_path / "index", "--models", "mine",
                   "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "story.yaml").write_text(f"models: {{preset: {folder / 'mine.json'}}}\n"
                                         "plots:\n  - text: A red square moves.\n")
    proc = run_cli("render", tmp_path / "story.yaml", "--index", tmp_path / "index", "--out", tmp_path / "out",
                   "--quiet", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["preset"] == "mine" and manifest["story"]["frames"] == 4


def test_preset_lookup_by_name_and_path(user_presets, tmp_path, monkeypatch):
    from storyreel.story.format import load_story

    monkeypatch.setenv("STORYREEL_PRESETS", str(user_presets / "presets"))
    mine = get_preset("mine")
    assert mine is get_preset(str(user_presets / "presets" / "mine.json")) is list_presets()["mine"]
    assert mine.generator.base == str((user_presets / "weights" / "base").resolve()) and mine.generator.steps == 2
    assert mine.clip == get_preset("tiny").clip and mine.depth == "tiny"
    # a user file named like a built-in preset does not replace it
    (tmp_path / "tiny.json").write_text(json.dumps({"extends": "tiny", "generator": {"steps": 3}}))
    monkeypatch.setenv("STORYREEL_PRESETS", str(tmp_path))
    assert get_preset("tiny").generator.steps == 4 and get_preset(str(tmp_path / "tiny.json")).generator.steps == 3
    with pytest.raises(UserError, match=r"^model preset file nowhere\.json not found \(--models"):
        get_preset("nowhere.json")
    # a story file names a preset file relative to itself
    (tmp_path / "story.yaml").write_text("models: {preset: tiny.json}\nplots:\n  - text: A cat sleeps.\n")
    assert load_story(tmp_path / "story.yaml").models == {"preset": str(tmp_path / "tiny.json")}


TINY_CLIP = {"architecture": "tiny", "seed": 0}
GENERATOR = {"base": "org/base", "motion_adapter": "org/adapter", "controlnet": "org/cn", "height": 64, "width": 64,
             "frames": 4, "steps": 2, "cfg": 7.5, "train_size": 64}


@pytest.mark.parametrize("text, problem", [
    ('{"clip": ', "not valid JSON (Expecting value at line 1 column 10)"),
    ('[1]', "expected a JSON object with clip, depth and generator"),
    (json.dumps({"extends": "tiny", "generatr": {}}), "generatr: unknown field (did you mean 'generator'?)"),
    (json.dumps({"extends": "tiny", "generator": {"steps": "2"}}),
     'generator.steps: expected a positive integer, got "2"'),
    (json.dumps({"extends": "tiny", "generator": {"height": 60}}),
     "generator.height: expected a positive multiple of 8, got 60"),
    (json.dumps({"extends": "tiny", "generator": {"scheduler": {"config": {}}}}),
     "generator.scheduler.name: missing; expected a non-empty string"),
    (json.dumps({"clip": TINY_CLIP, "depth": "tiny"}), "generator: missing; expected an object"),
    (json.dumps({"clip": TINY_CLIP, "depth": "tiny", "generator": {**GENERATOR, "cfg": True}}),
     "generator.cfg: expected a number, got true"),
    (json.dumps({"clip": "tiny", "depth": "tiny", "generator": GENERATOR}),
     'clip: expected an object or the path of an open_clip folder, got "tiny"'),
    (json.dumps({"clip": {**TINY_CLIP, "pretrained": "tag"}, "depth": "tiny", "generator": GENERATOR}),
     "clip.hf_repo: missing; a pretrained tag needs the Hugging Face repo its weights are in"),
    (json.dumps({"extends": "tiny", "generator": {"base": "./nowhere"}}),
     "generator.base ./nowhere: no such file or folder"),
    (json.dumps({"extends": "huge"}),
     'extends: expected the name of a built-in preset (default, tiny, toy), got "huge"'),
])
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        get_preset(str(path))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: {problem}"), message


def test_a_bad_preset_on_the_command_line_exits_1_with_one_line(run_cli, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"extends": "tiny", "depth": 3}))
    generate = ["generate", "--prompt", "a cat", "--out", tmp_path / "a.gif", "--backend", "t2v-zero"]
    for argv, env in (([*generate, "--models", tmp_path / "bad.json"], {}),
                      (["models"], {"STORYREEL_PRESETS": tmp_path})):
        proc = run_cli(*argv, env=env)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"storyreel: error: {tmp_path / 'bad.json'}: depth: expected a depth registry")
