"""VideoDirectorGPT plans in story files: entities with boxes, backgrounds, layout strength and consistency
groups; their validation messages; the rule-based planner's default layout; background groups in
retrieval; labelled boxes on sheets."""

from __future__ import annotations

import numpy as np
import pytest
from fake_index import DIM, FakeEmbedder, MemoryIndex, clip_row
from pack_headers import write_pack_header

from storyreel.core.sheet import SheetRow, paint_sheet
from storyreel.generation.layout import Layout, LayoutEntity
from storyreel.retrieval import prefer_video, search
from storyreel.story.clips import choose_clips
from storyreel.story.format import Entity, layout_of, load_story, plot_hash, resolved_plot_settings
from storyreel.story.planner import plan_rule_based, write_story

STORY = """\
title: Park
characters:
  "<rex>": {pack: rex.safetensors, name: Rex}
plots:
  - text: Rex chases a red ball.
    background: a sunny park
    layout_strength: 0.5
    entities:
      - {name: Rex, token: "<rex>", boxes: {0: [0.05, 0.3, 0.45, 0.9], 7: [0.5, 0.3, 0.9, 0.9]}}
      - name: ball
        description: a red ball
        boxes: {0: [0.6, 0.7, 0.7, 0.8]}
  - text: Rex sleeps in the sunny park.
    entities:
      - {name: Rex, token: "<rex>", boxes: {0: [0.3, 0.5, 0.7, 0.9]}}
consistency:
  entities: {Rex: [0, 1], ball: [0]}
  backgrounds: {park: [0, 1]}
"""


@pytest.fixture
def folder(tmp_path):
    write_pack_header(tmp_path / "rex.safetensors", "dog")
    return tmp_path


def load(folder, text=STORY):
    path = folder / "story.yaml"
    path.write_text(text)
    return load_story(path)


def test_plan_fields_load_resolve_and_round_trip(folder):
    story = load(folder)
    first = story.plots[0]
    assert first.entities == [Entity("Rex", "Rex", {0: (0.05, 0.3, 0.45, 0.9), 7: (0.5, 0.3, 0.9, 0.9)}, "<rex>"),
                              Entity("ball", "a red ball", {0: (0.6, 0.7, 0.7, 0.8)})]
    assert story.consistency == {"entities": {"Rex": [0, 1], "ball": [0]}, "backgrounds": {"park": [0, 1]}}
    settings = resolved_plot_settings(story, 0)
    assert settings["prompt"] == "<rex> chases a red ball, a sunny park"  # the background joins the prompt ...
    assert settings["query"] == "dog chases a red ball, a sunny park"  # ... and the query, Rex as his class word
    assert resolved_plot_settings(story, 1)["prompt"] == "<rex> sleeps in the sunny park."  # already says it
    assert settings["layout"]["strength"] == 0.5 and resolved_plot_settings(story, 1)["layout"]["strength"] == 0.4
    assert layout_of(settings) == Layout((
        LayoutEntity("Rex", "<rex>", {0: (0.05, 0.3, 0.45, 0.9), 7: (0.5, 0.3, 0.9, 0.9)}),
        LayoutEntity("ball", "a red ball", {0: (0.6, 0.7, 0.7, 0.8)})), strength=0.5, guidance=0.0)
    write_story(story, folder / "copy.yaml")
    assert load_story(folder / "copy.yaml") == story
    # A plot without a plan resolves as a story without plans (no layout, the same hash).
    plain = load(folder, "title: t\nplots:\n  - text: The sun sets.\n")
    assert "layout" not in resolved_plot_settings(plain, 0) and len(plot_hash(plain, 0)) == 64


@pytest.mark.parametrize("old, new, expected", [
    ("0: [0.05, 0.3, 0.45, 0.9]", "0: [0.05, 0.3, 1.45, 0.9]",
     "S:9: plots[0].entities[0].boxes[0]: 1.45 is outside [0, 1] (boxes are fractions of the frame)"),
    ("[0.6, 0.7, 0.7, 0.8]", "[0.8, 0.7, 0.7, 0.8]", "S:12: plots[0].entities[1].boxes[0]: x0 0.8 >= x1 0.7"),
    ("{0: [0.3, 0.5, 0.7, 0.9]}", "{-1: [0.3, 0.5, 0.7, 0.9]}",
     "S:15: plots[1].entities[0].boxes: keyframe -1 must be a frame index >= 0"),
    ("ball: [0]}", "ball: [0], cat: [1]}",
     "S:17: consistency.entities.cat: unknown entity 'cat' (entities: Rex, ball)"),
    ("ball: [0]}", "ball: [0, 1]}", "S:17: consistency.entities.ball: plots[1] has no entity 'ball'"),
    ("park: [0, 1]}", "park: [0, 2]}", "S:18: consistency.backgrounds.park: plot 2 is out of range (plots 0..1)"),
    ('token: "<rex>", boxes: {0: [0.3', 'token: "<rex>", description: a dog, boxes: {0: [0.3',
     "S:15: plots[1].entities.Rex: description/token 'a dog'/<rex> differs from plots[0]'s 'Rex'/<rex> "
     "(one group, one representation)"),
    ("    layout_strength: 0.5", "    layout_strength: 2", "S:7: plots[0].layout_strength: must be between 0 and 1, "
                                                           "got 2"),
    ('{name: Rex, token: "<rex>", boxes: {0: [0.3', '{name: Rex, token: "<bob>", boxes: {0: [0.3',
     "S:15: plots[1].entities[0].token: unknown character '<bob>' (characters: <rex>)"),
])
def test_plan_validation_names_file_line_and_field(folder, story_error, old, new, expected):
    assert old in STORY
    assert story_error(folder, STORY.replace(old, new, 1)) == expected


def test_rule_based_plan_spreads_characters_in_order_of_mention_only_when_asked():
    prose, cast = "Mia and Rex play. Rex sleeps. The sun sets.", {"Rex": "<rex>", "Mia": "<mia>"}
    unasked = plan_rule_based(prose, cast)
    assert [p.entities for p in unasked.plots] == [None] * 3 and unasked.consistency == {}
    story = plan_rule_based(prose, cast, layout=True)
    assert [[(e.name, e.token, e.boxes) for e in p.entities or []] for p in story.plots] == [
        [("Mia", "<mia>", {0: (0.05, 0.25, 0.45, 0.95)}), ("Rex", "<rex>", {0: (0.55, 0.25, 0.95, 0.95)})],
        [("Rex", "<rex>", {0: (0.05, 0.25, 0.95, 0.95)})],
        []]
    assert story.consistency == {"entities": {"Mia": [0], "Rex": [0, 1]}}


def test_background_group_takes_its_clips_from_one_source_video(folder):
    e = np.eye(DIM)
    park, lake = "/videos/park.mp4", "/videos/lake.mp4"
    vectors = {1: e[0], 2: (e[1] + 0.8 * e[2]) / np.linalg.norm(e[1] + 0.8 * e[2]), 3: e[2], 4: e[1], 5: e[3]}
    rows = [clip_row(1, video=park), clip_row(2, video=park, start_frame=48), clip_row(3, video=park, start_frame=96),
            clip_row(4, video=lake), clip_row(5, video=lake, start_frame=48)]
    index = MemoryIndex(rows, {c: np.tile(v, (2, 1)) for c, v in vectors.items()})
    embedder = FakeEmbedder({"grass": e[0], "water": e[1]})
    text = "title: t\ndefaults: {frames: 8, fps: 8}\nplots:\n  - text: One.\n    query: grass\n" \
           "  - text: Two.\n    query: water\n"
    apart = load(folder, text)
    assert [p.clip.clip_id for p in choose_clips(apart, index, embedder)] == [1, 4]  # the best clip each
    grouped = load(folder, text + "consistency: {backgrounds: {shore: [0, 1]}}\n")
    picks = choose_clips(grouped, index, embedder)
    assert [p.clip.clip_id for p in picks] == [1, 2]  # plot 1: the park video's best clip for "water"
    assert {p.clip.video for p in picks} == {park}
    assert picks[1].notes == ["background group 'shore': same source video as its first plot"]
    hits = prefer_video(search(index, text="water", k=5, embedder=embedder), park)
    assert [h.clip.clip_id for h in hits] == [2, 1, 3, 4, 5] and [h.rank for h in hits] == [1, 2, 3, 4, 5]


def test_sheet_outlines_labelled_boxes(tmp_path):
    from PIL import Image

    tile = np.zeros((40, 40, 3), np.uint8)
    paint_sheet(tmp_path / "s.png", [SheetRow([[tile, tile]], boxes=[[[((0.0, 0.0, 0.5, 0.5), "Rex")],
                                                                      [((0.5, 0.5, 1.0, 1.0), "ball")]]])])
    image = np.asarray(Image.open(tmp_path / "s.png"))
    assert tuple(image[10, 0]) == (255, 0, 0)  # Rex: red outline on the first tile's left edge
    assert tuple(image[30, 40 + 20]) == (0, 255, 0)  # ball: the row's second label, lime
    assert tuple(image[30, 30]) == (0, 0, 0)  # outside the boxes the tile is untouched
