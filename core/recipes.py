"""Recipes: one paper's sampling and training settings as data (one JSON file each in core/recipes/; docs/recipes.md).

A recipe's values go over the model preset's and under anything a flag or a story file sets:
preset → recipe → story `defaults:` / flags. `fast` is the project's own defaults (it changes nothing).

    get_recipe("animate-a-story").generation   # {"steps": 50, "cfg": 15.0}: GenerationSettings fields
    get_recipe("animate-a-story").training     # TrainSettings fields
    list_recipes()                             # every recipe by name

A recipe file: `paper` (where its values come from), `generation` and `training` (setting -> value) and
`sources` ("generation.steps" -> the paper's or its code's words for that value).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from storyreel.core.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "fast"


@dataclass(frozen=True)
class Recipe:
    name: str  # the file's name without .json
    paper: str
    generation: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def get_recipe(name: str | None = None) -> Recipe:
    """The recipe called `name` (None: DEFAULT_RECIPE); an unknown name is one line listing the known ones."""
    name = name or DEFAULT_RECIPE
    if name not in recipe_names():
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(recipe_names())} (docs/recipes.md)")
    return _read(RECIPES_DIR / f"{name}.json")


def list_recipes() -> dict[str, Recipe]:
    return {name: get_recipe(name) for name in recipe_names()}


@functools.cache
def _read(path: Path) -> Recipe:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict)
                                             for k in ("generation", "training", "sources")):
        raise UserError(f"recipe {path}: generation, training and sources must be objects")
    return Recipe(path.stem, str(data.get("paper", "")), data.get("generation", {}), data.get("training", {}),
                  data.get("sources", {}))
