"""The Story tab's tables (story/tables.py): a story file as rows and back, without a browser."""

from __future__ import annotations

import pytest
import yaml
from pack_headers import write_pack_header

from storyreel.core.errors import UserError
from storyreel.story import parse_story
from storyreel.story.tables import story_tables, tables_yaml

STORY = """title: Walk
style: oil painting
characters:
  <rex>: {pack: packs/rex.safetensors, name: Rex, word: dog}
plots:
  - text: Rex runs.
    background: a park
    entities: [{name: Rex, description: Rex, token: <rex>, boxes: {0: [0.1, 0.1, 0.5, 0.9]}}]
  - text: The sun sets.
    frames: 8
"""


def test_tables_round_trip_keeps_what_the_tables_do_not_show(tmp_path):
    (tmp_path / "packs").mkdir()
    write_pack_header(tmp_path / "packs" / "rex.safetensors", "dog")
    path = tmp_path / "walk.yaml"
    characters, plots = story_tables(parse_story(STORY, path), path)
    assert characters == [["<rex>", "Rex", "dog", "packs/rex.safetensors", ""]]
    assert plots[1] == ["The sun sets.", "", "", 8, "", "", "", "", ""]

    plots[0][4] = "0.3"  # tau typed into the table: read as a number
    plots[1][3] = "nan"  # a cleared number cell: left out
    data = yaml.safe_load(tables_yaml(STORY, path, characters, plots))
    assert data["title"] == "Walk" and data["style"] == "oil painting"
    assert data["plots"][0] == {"text": "Rex runs.", "tau": 0.3, "background": "a park",
                                "entities": [{"name": "Rex", "description": "Rex", "token": "<rex>",
                                              "boxes": {0: [0.1, 0.1, 0.5, 0.9]}}]}
    assert data["plots"][1] == {"text": "The sun sets."}
    assert data["characters"] == {"<rex>": {"name": "Rex", "word": "dog", "pack": "packs/rex.safetensors"}}
    assert yaml.safe_load(tables_yaml("", path, [], [["A dog.", "static"]]))["plots"] == [
        {"text": "A dog.", "motion": "static"}]  # a new file


@pytest.mark.parametrize("text, problem", [("plots: [", "is not valid YAML"), ("- a list\n", "is not a mapping")])
def test_tables_over_a_broken_file_are_a_one_line_error(tmp_path, text, problem):
    with pytest.raises(UserError, match=rf"walk\.yaml: the story file {problem}.*; fix it in the YAML tab$") as info:
        tables_yaml(text, tmp_path / "walk.yaml", [], [["A dog."]])
    assert "\n" not in str(info.value)
