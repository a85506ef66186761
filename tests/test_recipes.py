"""Recipes (core/recipes/): each paper's settings as data, applied under flags, recorded where they act."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from storyreel.core.errors import UserError
from storyreel.core.recipes import get_recipe, recipe_names
from storyreel.generation.characters.pack import pack_summary, save_pack
from storyreel.generation.components import create_components
from storyreel.generation.settings import GenerationSettings
from storyreel.training.train import CharacterTrainer, TrainSettings, load_concept_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PAPERS = ("animate-a-story", "reuse-and-diffuse", "text2video-zero", "videodirectorgpt")


def test_every_recipe_is_valid_settings_with_a_source_for_each_value():
    assert recipe_names() == sorted(["fast", *PAPERS])
    for name in recipe_names():
        recipe = get_recipe(name)
        GenerationSettings.for_preset("tiny", recipe=name).check()
        assert TrainSettings.from_recipe(name, token="<t>", init_word="toy").recipe == name
        given = {f"generation.{k}" for k in recipe.generation} | {f"training.{k}" for k in recipe.training}
        assert given == set(recipe.sources), name
    assert get_recipe("fast").generation == get_recipe("fast").training == {}


def test_a_recipe_goes_over_the_preset_and_under_what_is_given():
    aas = GenerationSettings.for_preset("tiny", recipe="animate-a-story")
    assert (aas.steps, aas.cfg, aas.recipe, aas.height) == (50, 15.0, "animate-a-story", 64)  # size: the preset's
    assert GenerationSettings.for_preset("tiny", recipe="animate-a-story", steps=10).steps == 10
    assert GenerationSettings.for_preset("tiny") == GenerationSettings.for_preset("tiny", recipe="fast")
    zero = GenerationSettings.for_preset("tiny", recipe="text2video-zero")
    assert (zero.backend, zero.steps, zero.frames) == ("t2v-zero", 50, 8)
    with pytest.raises(UserError, match="unknown recipe 'nope'; choose one of animate-a-story, fast"):
        GenerationSettings.for_preset("tiny", recipe="nope")


def test_generate_records_the_recipe_and_fast_gives_todays_frames(run_cli, tmp_path):
    common = ["generate", "--prompt", "a cat", "--backend", "t2v-zero", "--models", "tiny", "--frames", "2",
              "--height", "32", "--width", "32", "--json"]
    paper = run_cli(*common, "--recipe", "animate-a-story", "--out", tmp_path / "aas.mp4")
    assert paper.returncode == 0, paper.stderr
    sidecar = json.loads((tmp_path / "aas.mp4.json").read_text())
    assert (sidecar["recipe"], sidecar["steps"], sidecar["cfg"]) == ("animate-a-story", 50, 15.0)
    frames = {}
    for label, extra in (("fast", ["--recipe", "fast"]), ("none", [])):
        out = tmp_path / f"{label}_frames"
        assert run_cli(*common, *extra, "--out", out).returncode == 0
        frames[label] = np.stack([np.asarray(Image.open(p)) for p in sorted(out.iterdir())])
    assert np.array_equal(frames["fast"], frames["none"])
    assert json.loads((tmp_path / "fast_frames.json").read_text())["steps"] == 4  # tiny's own


def test_the_paper_recipe_trains_every_timeinv_row_on_its_own_and_a_qkv_lora(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    components = create_components("tiny")
    settings = TrainSettings.from_recipe("animate-a-story", token="<t>", init_word="bear", steps=1, size=32, frames=2)
    assert (settings.steps, settings.learning_rate, settings.anchors) == (1, 1e-4, None)  # steps given, lr the paper's

    def depth(frames):
        return torch.zeros(len(frames), 3, 32, 32)

    trainer = CharacterTrainer(components, components.ids, settings, load_concept_images(folder), depth)
    assert not hasattr(trainer.table, "anchors") and trainer.table_param.shape[0] == 1000
    trainer.step()
    assert int(trainer.rows_updated().sum()) == 1  # one row per step, no interpolation between rows
    targets = {key.split(".")[-3] for key in trainer.pack().lora}
    assert targets == {"to_q", "to_k", "to_v"} and trainer.pack().lora_targets == ("to_q", "to_k", "to_v")
    save_pack(trainer.pack(), tmp_path / "t.safetensors")  # what a generated clip's sidecar records of it
    assert pack_summary(tmp_path / "t.safetensors") == {
        "mode": "timeinv", "recipe": "animate-a-story", "timeinv_rows": 1000, "anchors": None, "lora_rank": 4,
        "lora_targets": ["to_q", "to_k", "to_v"]}


def test_a_story_names_its_recipe(tmp_path, story_error):
    from storyreel.story import load_story
    from storyreel.story.format import plot_settings

    (tmp_path / "s.yaml").write_text("recipe: reuse-and-diffuse\nplots:\n  - text: A walk.\n")
    settings = plot_settings(load_story(tmp_path / "s.yaml"), 0, "tiny")
    assert (settings.recipe, settings.steps, settings.cfg, settings.long) == ("reuse-and-diffuse", 50, 10.0, "vidrd")
    assert story_error(tmp_path, "recipe: nope\nplots:\n  - text: A walk.\n") == (
        "S:1: recipe: unknown recipe 'nope' (recipes: animate-a-story, fast, reuse-and-diffuse, text2video-zero, "
        "videodirectorgpt)")
