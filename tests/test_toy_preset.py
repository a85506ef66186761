"""`--models toy`: the trained toy-world weights (core/presets/toy.json) go through every command the way
`default`'s pretrained weights do: index build, search, depth, generate, character train, render, the UI.
Sizes and steps are cut to the bone; what the models achieve is measured in tests/test_toy_*.py."""

from __future__ import annotations

import json

import pytest

from storyreel.core.models import get_preset
from storyreel.toyworld import write_character_photos, write_world

CLIPS = 6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-world")
    truths = write_world(folder / "videos", clips=CLIPS, seed=3)
    from storyreel import index

    index.build(folder / "videos", folder / "index", index.BuildSettings(preset="toy"))
    return folder, truths


def test_the_toy_preset_names_its_committed_folders():
    preset = get_preset("toy")
    assert preset.clip.local_folder.name == "clip" and preset.depth.endswith("toy/depth")
    assert [getattr(preset.generator, role).rsplit("/", 2)[-2:] for role in ("base", "motion_adapter", "controlnet")] \
        == [["toy", "base"], ["toy", "motion_adapter"], ["toy", "controlnet"]]
    assert preset.generator.scheduler.config["clip_sample"] is True  # see training/toyworld/generator_models.py


def test_search_depth_and_generate_run_on_the_toy_preset(world, run_cli):
    folder, truths = world
    index = folder / "index"  # built by the fixture with BuildSettings(preset="toy"), as `index build --models toy`
    found = 0
    for n, truth in enumerate(truths):
        proc = run_cli("search", truth["caption"], "--index", index, "-k", "1", "--json", check=True)
        found += json.loads(proc.stdout)[0]["video"].endswith(f"clip_{n:04d}.mp4")
    assert found >= CLIPS - 1  # its own caption finds a clip (the toy CLIP: tests/test_toy_clip.py)
    depth = run_cli("depth", folder / "videos" / "clip_0000.mp4", "--out", folder / "depth.mp4", "--models", "toy",
                    "--json", check=True)
    assert json.loads(depth.stdout)["model"] == get_preset("toy").depth
    source = folder / "videos" / "clip_0000.mp4"
    generated = run_cli("generate", "--prompt", truths[0]["caption"], "--structure", source, "--out",
                        folder / "clip.mp4", "--models", "toy", "--frames", "4", "--steps", "2", "--json", check=True)
    report = json.loads(generated.stdout)
    assert (report["frames"], report["height"], report["width"]) == (4, 64, 64)


def test_a_character_trains_and_a_story_renders_on_the_toy_preset(world, run_cli):
    folder, truths = world
    photos = folder / "pip"
    write_character_photos(photos, "pip", 3)
    run_cli("character", "train", photos, "--token", "<pip>", "--init-word", "toy", "--out", folder / "pip.safetensors",
            "--models", "toy", "--steps", "2", "--frames", "2", check=True)
    story = folder / "story.yaml"
    story.write_text('title: T\ncharacters:\n  "<pip>": {pack: pip.safetensors, name: Pip, word: toy}\n'
                     "defaults: {frames: 4, steps: 2, seed: 0}\n"
                     f"plots:\n  - text: Pip on a beach.\n    query: {truths[1]['caption']}\n")
    run_cli("render", story, "--index", folder / "index", "--out", folder / "render", "--models", "toy", check=True)
    manifest = json.loads((folder / "render" / "manifest.json").read_text())
    assert manifest["preset"] == "toy"
    assert manifest["plots"]["0"]["clip"]["video"].endswith("clip_0001.mp4")


def test_the_toy_demo_story_casts_pip_in_clips_of_different_scenes(world, tmp_path):
    from storyreel.story.demo import toy_story
    from storyreel.story.format import load_story

    _, truths = world
    path = tmp_path / "story.yaml"
    path.write_text(toy_story(truths))
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "pip.safetensors").touch()  # the story names the demo's pack; loading checks it is there
    story = load_story(path)
    picked = [next(t for t in truths if t["caption"].startswith(f"{plot.query},")) for plot in story.plots]
    assert len({t["scene"] for t in picked}) == len(story.plots) == min(3, len({t["scene"] for t in truths}))
    assert [plot.motion for plot in story.plots] == [t["camera_motion"] for t in picked]
    assert all(plot.text.startswith("Pip ") for plot in story.plots) and list(story.characters) == ["<pip>"]


def test_the_ui_searches_with_the_toy_clip(world, tmp_path):
    from storyreel.ui.app import StoryreelApp, UIConfig

    folder, truths = world
    app = StoryreelApp(UIConfig(index=folder / "index", out=tmp_path / "out", preset="toy", temp_dir=tmp_path / "tmp"))
    status, gallery, hits = app.search(str(folder / "index"), truths[2]["caption"], None, "", None, 1)
    assert status.startswith("1 clips for") and hits[0]["video"].endswith("clip_0002.mp4")
