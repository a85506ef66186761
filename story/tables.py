"""A story file as two tables, characters and plots: what the web app's Story tab shows and edits.

`story_tables` turns a Story into rows; `tables_yaml` turns edited rows back into story-file text,
keeping what the tables do not show (title, style, defaults, and each plot's plan fields such as
entities and background). The text is checked as any story file is (`parse_story`) before it is saved.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from storyreel.core.errors import UserError
from storyreel.story.format import Story

PLOT_COLUMNS = ["text", "motion", "clip", "frames", "tau", "seed", "query", "prompt", "backend"]
CHARACTER_COLUMNS = ["token", "name", "word", "pack", "tau"]
_NUMBER_COLUMNS = ("clip", "frames", "tau", "seed")


def story_tables(story: Story, path: str | Path) -> tuple[list[list], list[list]]:
    """(character rows, plot rows) of a Story, packs as written in the file at `path` (relative to it)."""
    characters = []
    for token, c in story.characters.items():
        pack = os.path.relpath(c.pack, Path(path).resolve().parent) if Path(c.pack).is_absolute() else str(c.pack)
        characters.append([token, c.name, c.word or "", pack, "" if c.tau is None else c.tau])
    plots = [["" if getattr(p, col) is None else getattr(p, col) for col in PLOT_COLUMNS] for p in story.plots]
    return characters, plots


def tables_yaml(previous_text: str, path: str | Path, character_rows, plot_rows) -> str:
    """The story file `previous_text` (the file at `path`, "" if new) with the tables as its characters and
    plots; the other fields, and each plot's fields the table has no column for, stay."""
    try:
        data = yaml.safe_load(previous_text) if previous_text.strip() else {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: the story file is not valid YAML ({' '.join(str(err).split())}); "
                        "fix it in the YAML tab") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the story file is not a mapping of fields; fix it in the YAML tab")
    data["characters"] = {row["token"]: {k: v for k, v in row.items() if k != "token"}
                          for row in _table_records(character_rows, CHARACTER_COLUMNS) if row.get("token")}
    previous = data.get("plots") if isinstance(data.get("plots"), list) else []
    data["plots"] = _table_records(plot_rows, PLOT_COLUMNS)
    for row, before in zip(data["plots"], previous):  # plan fields (entities, background, ...) stay
        if isinstance(before, dict):
            row.update({k: v for k, v in before.items() if k not in PLOT_COLUMNS})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


def _table_records(rows, columns) -> list[dict]:
    """Table rows as story-file mappings: empty cells left out, numbers read as YAML reads them."""
    records = []
    for row in rows or []:
        record = {}
        for column, cell in zip(columns, row):
            text = "" if cell is None else str(cell).strip()
            if not text or text.lower() == "nan":
                continue
            record[column] = yaml.safe_load(text) if column in _NUMBER_COLUMNS else text
        if record:
            records.append(record)
    return records
