"""Story files: loading, resolution rules, plot hashes and one-line validation errors with line numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pack_headers import write_pack_header

from storyreel.core.errors import UserError
from storyreel.story.format import (
    Character,
    Plot,
    load_story,
    plot_hash,
    resolved_plot_settings,
    validate_pins,
)

STORY = """\
title: Rex and Mia
characters:
  "<rex>": {pack: packs/rex.safetensors, name: Rex, word: dog, tau: 0.3}
  "<mia>":
    pack: packs/mia.safetensors
    name: Mia
style: watercolor
negative_prompt: blurry
defaults: {frames: 8, fps: 4, height: 64, width: 96, steps: 3, cfg: 5, tau: 0.6, seed: 10}
plots:
  - text: Rex runs across the meadow.
    motion: pan-left
  - text: Mia opens the door.
    frames: 12
    tau: 0.9
    clip: 7
  - text: The <rex> and mia watch the sunset.
  - text: The sun sets.
    query: sunset over the sea
    prompt: A red sun sets over the sea
    seed: 99
"""


@pytest.fixture
def story_dir(tmp_path: Path) -> Path:
    (tmp_path / "packs").mkdir()
    write_pack_header(tmp_path / "packs" / "rex.safetensors", "dog")
    write_pack_header(tmp_path / "packs" / "mia.safetensors", "girl")
    return tmp_path


def write(folder: Path, text: str, name: str = "story.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_load_story_types_and_resolved_paths(story_dir):
    story = load_story(write(story_dir, STORY))
    assert story.title == "Rex and Mia"
    assert story.characters == {
        "<rex>": Character(pack=story_dir.resolve() / "packs/rex.safetensors", name="Rex", word="dog", tau=0.3),
        # no word given: the pack's init word
        "<mia>": Character(pack=story_dir.resolve() / "packs/mia.safetensors", name="Mia", word="girl"),
    }
    assert story.defaults == {"frames": 8, "fps": 4.0, "height": 64, "width": 96, "steps": 3, "cfg": 5.0, "tau": 0.6,
                              "seed": 10}
    assert story.plots[1] == Plot(text="Mia opens the door.", frames=12, tau=0.9, clip=7)
    assert story.plots[1].lines == {"": 13, "text": 13, "frames": 14, "tau": 15, "clip": 16}


def test_resolved_plot_settings_apply_the_rules(story_dir):
    story = load_story(write(story_dir, STORY))
    rex = {"token": "<rex>", "name": "Rex", "pack": str(story_dir.resolve() / "packs/rex.safetensors"),
           "pack_sha256": hashlib.sha256((story_dir / "packs/rex.safetensors").read_bytes()).hexdigest()}
    settings = [resolved_plot_settings(story, i) for i in range(4)]
    common = {"negative_prompt": "blurry", "fps": 4.0, "height": 64, "width": 96, "steps": 3, "cfg": 5.0,
              "structure_scale": 1.0, "window_frames": 16, "overlap_frames": 4, "long": "overlap", "speed": 1.0,
              "recipe": "fast",
              "decode_chunk_size": 4,
              "backend": "animatediff", "motion_field": [1.0, 1.0], "motion_strength": 12.0, "t0": None, "t1": None}
    assert settings[0] == {
        **common, "index": 0, "text": "Rex runs across the meadow.",
        "query": "dog runs across the meadow.",  # the name becomes the class word
        "prompt": "<rex> runs across the meadow, watercolor",
        "motion": "pan-left", "clip": None, "frames": 8,
        "tau": 0.3,  # Rex's override beats defaults.tau
        "seed": 10, "characters": [rex],
    }
    assert settings[1]["tau"] == 0.9 and settings[1]["frames"] == 12 and settings[1]["seed"] == 11
    assert settings[1]["prompt"] == "<mia> opens the door, watercolor"
    assert [c["token"] for c in settings[1]["characters"]] == ["<mia>"]
    # Token and lower-case name both count; the smallest override of those present wins.
    assert settings[2]["query"] == "The dog and girl watch the sunset."  # names never reach the query
    assert settings[2]["prompt"] == "The <rex> and <mia> watch the sunset, watercolor"
    assert [c["token"] for c in settings[2]["characters"]] == ["<rex>", "<mia>"]
    assert settings[2]["tau"] == 0.3 and settings[2]["seed"] == 12
    assert settings[3]["query"] == "sunset over the sea"
    assert settings[3]["prompt"] == "A red sun sets over the sea, watercolor"
    assert settings[3]["tau"] == 0.6 and settings[3]["seed"] == 99 and settings[3]["characters"] == []
    json.dumps(settings)  # JSON-serializable as the manifest needs


def test_plot_hash_changes_only_with_that_plots_inputs(story_dir):
    path = write(story_dir, STORY)
    before = [plot_hash(load_story(path), i) for i in range(4)]
    assert before == [plot_hash(load_story(path), i) for i in range(4)]  # stable across loads
    assert len(set(before)) == 4 and all(len(h) == 64 for h in before)

    write(story_dir, STORY.replace("Mia opens the door.", "Mia closes the door."))
    after = [plot_hash(load_story(path), i) for i in range(4)]
    assert [a == b for a, b in zip(before, after)] == [True, False, True, True]

    write_pack_header(story_dir / "packs" / "rex.safetensors", "puppy")
    retrained = [plot_hash(load_story(path), i) for i in range(4)]
    assert [a == b for a, b in zip(after, retrained)] == [False, True, False, True]


def test_json_story_is_accepted(story_dir):
    data = {"title": "J", "characters": {"<rex>": {"pack": "packs/rex.safetensors"}},
            "plots": [{"text": "Rex sleeps.", "frames": 4}]}
    story = load_story(write(story_dir, json.dumps(data), "story.json"))
    assert story.title == "J" and story.characters["<rex>"].name == "rex"
    assert story.plots == [Plot(text="Rex sleeps.", frames=4)]
    assert resolved_plot_settings(story, 0)["prompt"] == "<rex> sleeps."


@pytest.mark.parametrize("edit, expected", [
    (("    motion: pan-left", "    moton: pan-left"),
     "S:12: plots[0]: unknown field 'moton' (did you mean 'motion'?)"),
    (("style: watercolor", "styel: watercolor"),
     "S:7: unknown field 'styel' (did you mean 'style'?)"),
    (("packs/mia.safetensors", "packs/missing.safetensors"),
     "S:5: characters.<mia>.pack: pack file not found: {dir}/packs/missing.safetensors "
     "(paths are relative to the story file; train one with `storyreel character train`)"),
    (("  - text: The sun sets.", "  - text: ''"),
     "S:18: plots[3].text: must not be empty"),
    (("  - text: Mia opens the door.\n", "  - \n"),
     "S:14: plots[1]: missing field 'text' (what happens in this plot)"),
    (("    frames: 12", "    frames: 0"),
     "S:14: plots[1].frames: must be an integer >= 1, got 0"),
    (("    frames: 12", "    frames: -3"),
     "S:14: plots[1].frames: must be an integer >= 1, got -3"),
    (("    frames: 12", "    frames: ten"),
     "S:14: plots[1].frames: expected an integer, got 'ten' (str)"),
    (("    tau: 0.9", "    tau: 1.5"),
     "S:15: plots[1].tau: must be between 0 and 1, got 1.5"),
    (("tau: 0.3}", "tau: -0.1}"),
     "S:3: characters.<rex>.tau: must be between 0 and 1, got -0.1"),
    (("    motion: pan-left", "    motion: pan_left"),
     "S:12: plots[0].motion: unknown motion 'pan_left' (did you mean 'pan-left'? labels: static, pan-left, "
     "pan-right, tilt-up, tilt-down, zoom-in, zoom-out, dynamic)"),
    (("width: 96", "width: 90"),
     "S:9: defaults.width: must be a positive multiple of 8, got 90"),
    (("    clip: 7", "    clip: [7]"),
     "S:16: plots[1].clip: expected an integer, got a list"),
    (("    seed: 99", "    seed: 99\n    seed: 98"),
     "S:22: plots[3]: field 'seed' is given twice"),
    (("    motion: pan-left", "    motion: pan-left\n    characters: ['<bob>']"),
     "S:13: plots[0].characters: unknown character '<bob>' (characters: <rex>, <mia>)"),
    (("title: Rex and Mia", "title: [Rex"),
     "S:2: not valid YAML/JSON: expected ',' or ']', but got ':'"),
])
def test_validation_errors_name_line_and_field(story_dir, story_error, edit, expected):
    old, new = edit
    assert old in STORY
    text = STORY.replace(old, new, 1)
    assert story_error(story_dir, text) == expected.replace("{dir}", str(story_dir.resolve()))


def test_missing_file_and_missing_plots(story_dir, story_error):
    with pytest.raises(UserError, match=r"^nope\.yaml: story file not found$"):
        load_story("nope.yaml")
    assert story_error(story_dir, "title: x\n") == "S:1: missing field 'plots' (a list of plots, each with a 'text')"
    assert story_error(story_dir, "title: x\nplots: []\n") == "S:2: plots: expected a non-empty list of plots"
    assert story_error(story_dir, "- text: a\n") == "S:1: expected a mapping of fields, got a list"


def test_validate_pins_names_plot_and_line(story_dir):
    path = write(story_dir, STORY)
    story = load_story(path)
    validate_pins(story, lambda clip_id: clip_id == 7)
    with pytest.raises(UserError) as info:
        validate_pins(story, lambda clip_id: clip_id < 5)
    assert str(info.value) == f"{path}:16: plots[1].clip: clip 7 is not in the index (see `storyreel index ls`)"


def test_a_characters_name_never_reaches_the_query_its_packs_init_word_does(tmp_path):
    write_pack_header(tmp_path / "rex.safetensors", "dog")
    story = load_story(write(tmp_path, 'characters:\n  "<rex>": {pack: rex.safetensors, name: Rex}\n'
                                       "plots:\n  - text: Rex runs across the meadow.\n"
                                       "  - text: The <rex> sleeps.\n"))
    assert [resolved_plot_settings(story, i)["query"] for i in range(2)] == ["dog runs across the meadow.",
                                                                            "The dog sleeps."]
    assert [resolved_plot_settings(story, i)["prompt"] for i in range(2)] == ["<rex> runs across the meadow.",
                                                                             "The <rex> sleeps."]
