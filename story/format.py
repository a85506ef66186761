"""Story files: the YAML (or JSON) a user writes to describe a story video, as typed dataclasses.

A story is a list of *plots*, each a single event (no shot change inside), rendered one clip per
plot and concatenated. Every field but `plots[].text` is optional; docs/stories.md has a
full example.

Resolution rules (what `resolved_plot_settings` computes for plot i):
- Characters present: `plot.characters` (a list of tokens) if given, else every character whose token
  (exact) or name (case-insensitive, whole word) occurs in the plot's text or explicit prompt.
- `prompt`: the plot's `prompt` (else its `text`) with every character name replaced by its token,
  then ", " + `style` when the story has one (a final period is dropped before it).
- `query` (retrieval text, no tokens, no names): the plot's `query` (else its `text`) with every token
  and every name replaced by the character's `word` (default: its pack's init word), so "Rex runs" with
  a pack trained from "dog" searches for "dog runs".
- Generation settings (`GenerationSettings`, generation/settings.py): the model preset's (its size,
  frames, steps and cfg), then the story's `defaults:`, then the plot's `frames`, `tau`, `seed`.
  For `tau` a plot without its own value takes the smallest `tau` override of the characters present
  (a small tau loosens structure so the character's own shape wins; with two characters the looser
  one wins), else `defaults.tau`. `seed` defaults to `defaults.seed + i`, so plots differ but reruns
  repeat. fps, size, steps, cfg and negative prompt are story-wide (the plots make one video).

Plans (VideoDirectorGPT): a plot may list `entities` (name, description, optional character token,
boxes [x0, y0, x1, y1] at keyframes: frame index -> box, fractions of the frame), a `background`
and a `layout_strength` (the fraction of the steps whose attention the boxes mask, generation/layout.py;
default DEFAULT_LAYOUT_STRENGTH when the plot has entities) and `layout_guidance` (energy guidance,
default 0). A story may give `consistency` groups: `entities` {name: [plot indices]} (one description
and token in every plot of the group) and `backgrounds` {name: [plot indices]} (one background text;
retrieval prefers one source video for them, story/clips.py). A plot's background is
added to its prompt and its default query unless they already contain it.

Pack paths are relative to the story file; `load_story` resolves them to absolute paths and
`write_story` (story/planner.py) writes them relative to the file it writes.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from storyreel.core.errors import UserError
from storyreel.core.models import COMPONENTS
from storyreel.generation.characters import pack_init_word
from storyreel.generation.layout import DEFAULT_LAYOUT_STRENGTH, Layout, LayoutEntity, box_problem
from storyreel.generation.settings import BACKENDS, GenerationSettings, setting_problem
from storyreel.index.motion import MOTION_LABELS


@dataclass
class Character:
    pack: Path  # character pack file (absolute after load_story)
    name: str  # how the story text refers to the character ("Rex")
    # class word used in retrieval queries ("dog"); load_story fills in the pack's init word when the file gives
    # none (a plan not yet written, whose packs may not exist yet, has None: its names stand in)
    word: str | None = None
    tau: float | None = None  # structure-guidance clamp for plots with this character


@dataclass
class Entity:
    """Something placed in a plot's frame: VideoDirectorGPT's entity with its boxes at keyframes."""

    name: str
    description: str  # the words for it in the prompt (one phrase for every plot of its group)
    boxes: dict[int, tuple[float, float, float, float]]  # keyframe (frame index) -> [x0, y0, x1, y1]
    token: str | None = None  # a character token: the entity is that character (its pack)

    @property
    def phrase(self) -> str:
        """The prompt words its region attends to: the character token, else the description."""
        return self.token or self.description


@dataclass
class Plot:
    text: str  # what happens: a single event, in plain words with character names
    query: str | None = None  # retrieval text (default: text)
    prompt: str | None = None  # generation text (default: text)
    motion: str | None = None  # camera-motion label to prefer for the retrieved clip
    frames: int | None = None
    tau: float | None = None
    seed: int | None = None
    clip: int | None = None  # pin a clip id of the index
    characters: list[str] | None = None  # tokens present (default: detected in text/prompt)
    backend: str | None = None  # generation backend of this plot (default: the story's)
    entities: list[Entity] | None = None  # what is where (boxes at keyframes)
    background: str | None = None  # the scene behind the entities
    layout_strength: float | None = None  # fraction of steps whose attention the boxes mask
    layout_guidance: float | None = None  # energy-guidance step size (0/None: off)
    # Line numbers in the story file, per field ("" = the plot itself), for error messages.
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Story:
    title: str
    plots: list[Plot]
    characters: dict[str, Character] = field(default_factory=dict)  # token -> character
    style: str = ""
    negative_prompt: str = ""
    # Story-wide generation settings the file gives (STORY_SETTINGS); the rest are the preset's.
    defaults: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None  # generation backend of plots without their own (None: the render's)
    recipe: str | None = None  # the paper recipe its settings start from (core/recipes/; None: the render's)
    # Consistency groups: {"entities": {name: [plot indices]}, "backgrounds": {name: [plot indices]}}.
    consistency: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # `models:` section: preset and swapped components (MODEL_FIELDS), as the flags of the same names take
    # them; relative paths are relative to the story file. The render's flags win over it.
    models: dict[str, str] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # file it was loaded from


STORY_FIELDS = ("title", "characters", "style", "negative_prompt", "defaults", "backend", "recipe", "models",
                "consistency", "plots")
ENTITY_FIELDS = ("name", "description", "token", "boxes")
CONSISTENCY_KINDS = ("entities", "backgrounds")
# `models:` fields: --models and the component flags (core/models.py COMPONENTS).
MODEL_FIELDS = ("preset", *(c.story_key for c in COMPONENTS))
TAKES_PATH = {c.story_key: c.takes_path for c in COMPONENTS}
CHARACTER_FIELDS = tuple(f.name for f in fields(Character))
# `defaults:` fields: the GenerationSettings a story author sets (window sizes and decode chunks are
# the pipeline's business).
STORY_SETTINGS = ("frames", "fps", "speed", "height", "width", "steps", "cfg", "tau", "seed", "structure_scale")
PLOT_FIELDS = tuple(f.name for f in fields(Plot) if f.name != "lines")
MAX_CLIP_ID = 2**63 - 1  # clip ids are the catalog's BIGINTs


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_story(path: str | Path) -> Story:
    """Read and validate a story file; raises a one-line UserError naming file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: story file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read story file ({err})") from None
    return parse_story(text, path)


def parse_story(text: str, path: str | Path) -> Story:
    """Validate `text` as the story file `path` would be read (errors and relative packs refer to `path`),
    without reading or writing that file: an editor checks its text before saving it."""
    path = Path(path)
    return _StoryReader(str(path), path.resolve().parent).read(text)


class _StoryReader:
    """Parses with PyYAML's composer (which keeps node marks) so every error can name its line."""

    def __init__(self, source: str, base_dir: Path):
        self.source = source
        self.base_dir = base_dir

    def fail(self, node: yaml.Node, where: str, message: str):
        where = f" {where}:" if where else ""
        raise UserError(f"{self.source}:{node.start_mark.line + 1}:{where} {message}")

    def read(self, text: str) -> Story:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UserError(f"{self.source}{line}: not valid YAML/JSON: {problem}") from None
        if root is None:
            raise UserError(f"{self.source}: story file is empty")
        top = self.mapping(root, "", STORY_FIELDS)
        if "plots" not in top:
            self.fail(root, "", "missing field 'plots' (a list of plots, each with a 'text')")

        characters = {}
        if "characters" in top:
            for token_node, value in self.mapping(top["characters"][1], "characters").values():
                token = self.string(token_node, "characters", "a character token such as '<rex>'")
                if re.search(r"\s", token):
                    self.fail(token_node, f"characters.{token}", "a token must not contain spaces")
                characters[token] = self.character(token, value)

        defaults = {}
        if "defaults" in top:
            items = self.mapping(top["defaults"][1], "defaults", STORY_SETTINGS)
            defaults = {key: self.default_value(key, node) for key, (_, node) in items.items()}

        models = {}
        if "models" in top:
            for key, (_, node) in self.mapping(top["models"][1], "models", MODEL_FIELDS).items():
                value = self.string(node, f"models.{key}", "a model name, repo id or path")
                local = self.base_dir / value
                # a path next to the story file, else as written (a repo id, a registry name, an absolute path)
                path_ok = value.endswith(".json") if key == "preset" else TAKES_PATH[key]
                models[key] = str(local) if path_ok and local.exists() else value

        plots_node = top["plots"][1]
        if not isinstance(plots_node, yaml.SequenceNode) or not plots_node.value:
            self.fail(plots_node, "plots", "expected a non-empty list of plots")
        plots = [self.plot(i, node, characters) for i, node in enumerate(plots_node.value)]
        consistency = self.consistency(top["consistency"][1], plots) if "consistency" in top else {}

        return Story(
            title=self.string(top["title"][1], "title") if "title" in top else Path(self.source).stem,
            plots=plots,
            characters=characters,
            style=self.string(top["style"][1], "style", empty_ok=True) if "style" in top else "",
            negative_prompt=(
                self.string(top["negative_prompt"][1], "negative_prompt", empty_ok=True)
                if "negative_prompt" in top else ""
            ),
            defaults=defaults,
            backend=self.backend(top["backend"][1], "backend") if "backend" in top else None,
            recipe=self.recipe(top["recipe"][1]) if "recipe" in top else None,
            consistency=consistency,
            models=models,
            source=self.source,
        )

    # -- structure ------------------------------------------------------------------------------

    def mapping(self, node, where: str, allowed: tuple[str, ...] | None = None) -> dict:
        """{key: (key_node, value_node)}; rejects unknown (with a suggestion) and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where, f"expected a mapping of fields, got {_kind(node)}")
        items = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, where, "a field name")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(allowed)})"
                self.fail(key_node, where, f"unknown field '{key}'{hint}")
            if key in items:
                self.fail(key_node, where, f"field '{key}' is given twice")
            items[key] = (key_node, value_node)
        return items

    def character(self, token: str, node) -> Character:
        where = f"characters.{token}"
        items = self.mapping(node, where, CHARACTER_FIELDS)
        if "pack" not in items:
            self.fail(node, where, "missing field 'pack' (the character pack file)")
        pack_node = items["pack"][1]
        pack = self.base_dir / self.string(pack_node, f"{where}.pack")
        if not pack.is_file():
            self.fail(pack_node, f"{where}.pack", f"pack file not found: {pack} "
                      "(paths are relative to the story file; train one with `storyreel character train`)")
        name = self.string(items["name"][1], f"{where}.name") if "name" in items else token.strip("<>")
        word = self.string(items["word"][1], f"{where}.word") if "word" in items else pack_init_word(pack)
        tau = self.fraction(items["tau"][1], f"{where}.tau") if "tau" in items else None
        return Character(pack=pack.resolve(), name=name, word=word, tau=tau)

    def default_value(self, key: str, node):
        value = self._default_value(key, node)
        self.check_range(node, f"defaults.{key}", key, value)
        return value

    def check_range(self, node, where: str, key: str, value) -> None:
        """The setting's range (generation/settings.py LIMITS): e.g. frames up to 4096, seed below 2**32."""
        problem = setting_problem(key, value)
        if problem:
            self.fail(node, where, problem)

    def _default_value(self, key: str, node):
        where = f"defaults.{key}"
        if key == "tau":
            return self.fraction(node, where)
        if key in ("fps", "speed", "structure_scale"):
            value = self.number(node, where)
            if value < 0 or (value == 0 and key != "structure_scale"):
                self.fail(node, where, f"must be {'>= 0' if key == 'structure_scale' else '> 0'}, got {value:g}")
            return value
        if key == "cfg":
            value = self.number(node, where)
            if value < 1:
                self.fail(node, where, f"must be >= 1 (1 turns guidance off), got {value:g}")
            return value
        if key in ("height", "width"):
            value = self.integer(node, where, minimum=-(2**63))
            if value <= 0 or value % 8:
                self.fail(node, where, f"must be a positive multiple of 8, got {value}")
            return value
        return self.integer(node, where, minimum=0 if key == "seed" else 1)

    def plot(self, i: int, node, characters: dict[str, Character]) -> Plot:
        where = f"plots[{i}]"
        items = self.mapping(node, where, PLOT_FIELDS)
        if "text" not in items:
            self.fail(node, where, "missing field 'text' (what happens in this plot)")
        values: dict[str, Any] = {}
        for key, (_, value_node) in items.items():
            here = f"{where}.{key}"
            if key in ("text", "query", "prompt"):
                values[key] = self.string(value_node, here)
            elif key == "motion":
                label = self.string(value_node, here)
                if label not in MOTION_LABELS:
                    close = difflib.get_close_matches(label, MOTION_LABELS, n=1)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    self.fail(value_node, here, f"unknown motion '{label}' ({hint}labels: {', '.join(MOTION_LABELS)})")
                values[key] = label
            elif key in ("tau", "layout_strength"):
                values[key] = self.fraction(value_node, here)
            elif key == "layout_guidance":
                values[key] = self.number(value_node, here)
                if values[key] < 0:
                    self.fail(value_node, here, f"must be >= 0 (0 turns guidance off), got {values[key]:g}")
            elif key == "background":
                values[key] = self.string(value_node, here)
            elif key == "entities":
                values[key] = self.entities(value_node, here, characters)
            elif key == "backend":
                values[key] = self.backend(value_node, here)
            elif key == "characters":
                if not isinstance(value_node, yaml.SequenceNode):
                    self.fail(value_node, here, f"expected a list of character tokens, got {_kind(value_node)}")
                tokens = []
                for token_node in value_node.value:
                    token = self.string(token_node, here)
                    if token not in characters:
                        known = ", ".join(characters) or "none defined"
                        self.fail(token_node, here, f"unknown character '{token}' (characters: {known})")
                    tokens.append(token)
                values[key] = tokens
            else:  # frames, seed, clip
                values[key] = self.integer(value_node, here, minimum=1 if key == "frames" else 0)
                if key != "clip":
                    self.check_range(value_node, here, key, values[key])
                elif values[key] > MAX_CLIP_ID:
                    self.fail(value_node, here, f"no clip has id {values[key]} (see `storyreel index ls`)")
        lines = {"": node.start_mark.line + 1}
        lines.update({key: value_node.start_mark.line + 1 for key, (_, value_node) in items.items()})
        return Plot(**values, lines=lines)

    def entities(self, node, where: str, characters: dict[str, Character]) -> list[Entity]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, f"expected a list of entities, got {_kind(node)}")
        entities = []
        for n, entity_node in enumerate(node.value):
            here = f"{where}[{n}]"
            items = self.mapping(entity_node, here, ENTITY_FIELDS)
            for required in ("name", "boxes"):
                if required not in items:
                    self.fail(entity_node, here, f"missing field '{required}'")
            name = self.string(items["name"][1], f"{here}.name")
            if any(e.name == name for e in entities):
                self.fail(items["name"][1], f"{here}.name", f"entity '{name}' is listed twice in this plot")
            token = None
            if "token" in items:
                token = self.string(items["token"][1], f"{here}.token")
                if token not in characters:
                    known = ", ".join(characters) or "none defined"
                    self.fail(items["token"][1], f"{here}.token", f"unknown character '{token}' (characters: {known})")
            if "description" in items:
                description = self.string(items["description"][1], f"{here}.description")
            elif token is not None:
                description = characters[token].name
            else:
                self.fail(entity_node, here, "missing field 'description' (the entity's words in the prompt)")
            entities.append(Entity(name, description, self.boxes(items["boxes"][1], f"{here}.boxes"), token))
        return entities

    def boxes(self, node, where: str) -> dict[int, tuple[float, float, float, float]]:
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.fail(node, where, "expected keyframes {frame index: [x0, y0, x1, y1]}, e.g. {0: [0.1, 0.2, 0.5, 0.9]}")
        boxes = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, where, "a frame index")
            if isinstance(key, str) and key.strip().isdigit():  # JSON keys are strings
                key = int(key)
            if isinstance(key, bool) or not isinstance(key, int) or key < 0:
                self.fail(key_node, where, f"keyframe {key!r} must be a frame index >= 0")
            here = f"{where}[{key}]"
            if key in boxes:
                self.fail(key_node, here, "keyframe given twice")
            value = None
            if isinstance(value_node, yaml.SequenceNode):
                value = [self.scalar(v, here, "a number") for v in value_node.value]
            problem = box_problem(value) if value is not None else f"expected [x0, y0, x1, y1], got {_kind(value_node)}"
            if problem:
                self.fail(value_node, here, problem)
            boxes[key] = tuple(float(v) for v in value)
        return boxes

    def consistency(self, node, plots: list[Plot]) -> dict[str, dict[str, list[int]]]:
        """Groups {kind: {name: [plot indices]}}: plots in range, entities present with one description."""
        groups = {}
        for kind, (_, kind_node) in self.mapping(node, "consistency", CONSISTENCY_KINDS).items():
            groups[kind] = {}
            for name, (_, members_node) in self.mapping(kind_node, f"consistency.{kind}").items():
                here = f"consistency.{kind}.{name}"
                if not isinstance(members_node, yaml.SequenceNode) or not members_node.value:
                    self.fail(members_node, here, "expected a non-empty list of plot indices")
                members = []
                for member in members_node.value:
                    j = self.integer(member, here, minimum=0)
                    if j >= len(plots):
                        self.fail(member, here, f"plot {j} is out of range (plots 0..{len(plots) - 1})")
                    members.append(j)
                if kind == "entities":
                    self.entity_group(name, members, members_node, plots)
                else:
                    texts = {plots[j].background for j in members if plots[j].background is not None}
                    if len(texts) > 1:
                        self.fail(members_node, here, f"its plots have different backgrounds "
                                  f"({' / '.join(sorted(texts))}); a background group shares one background text")
                groups[kind][name] = members
        return groups

    def entity_group(self, name: str, members: list[int], node, plots: list[Plot]) -> None:
        where = f"consistency.entities.{name}"
        if not any(e.name == name for p in plots for e in p.entities or []):
            known = sorted({e.name for p in plots for e in p.entities or []})
            self.fail(node, where, f"unknown entity '{name}' (entities: {', '.join(known) or 'none'})")
        first = None
        for j in members:
            entity = next((e for e in plots[j].entities or [] if e.name == name), None)
            if entity is None:
                self.fail(node, where, f"plots[{j}] has no entity '{name}'")
            if first is None:
                first = (j, entity)
            elif (entity.description, entity.token) != (first[1].description, first[1].token):
                line = plots[j].lines.get("entities", plots[j].lines.get(""))
                raise UserError(f"{self.source}:{line}: plots[{j}].entities.{name}: description/token "
                                f"{entity.description!r}/{entity.token} differs from plots[{first[0]}]'s "
                                f"{first[1].description!r}/{first[1].token} (one group, one representation)")

    # -- scalars --------------------------------------------------------------------------------

    def scalar(self, node, where: str, expected: str):
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, where, f"expected {expected}, got {_kind(node)}")
        try:
            return yaml.SafeLoader("").construct_object(node)
        except yaml.YAMLError as err:  # e.g. a tag such as !!python/object, which safe loading refuses
            self.fail(node, where, f"cannot read this value ({getattr(err, 'problem', None) or err})")

    def string(self, node, where: str, expected: str = "a text", empty_ok: bool = False) -> str:
        value = self.scalar(node, where, expected)
        if not isinstance(value, str):
            self.fail(node, where, f"expected {expected}, got {value!r} ({type(value).__name__})")
        if not empty_ok and not value.strip():
            self.fail(node, where, "must not be empty")
        return value

    def integer(self, node, where: str, minimum: int) -> int:
        value = self.scalar(node, where, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, where, f"expected an integer, got {value!r} ({type(value).__name__})")
        if value < minimum:
            self.fail(node, where, f"must be an integer >= {minimum}, got {value}")
        return value

    def number(self, node, where: str) -> float:
        value = self.scalar(node, where, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(node, where, f"expected a number, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value):
            self.fail(node, where, f"expected a finite number, got {value}")
        return float(value)

    def backend(self, node, where: str) -> str:
        name = self.string(node, where)
        if name not in BACKENDS:
            self.fail(node, where, f"unknown backend '{name}' (backends: {', '.join(BACKENDS)})")
        return name

    def recipe(self, node) -> str:
        from storyreel.core.recipes import recipe_names

        name = self.string(node, "recipe")
        if name not in recipe_names():
            self.fail(node, "recipe", f"unknown recipe '{name}' (recipes: {', '.join(recipe_names())})")
        return name

    def fraction(self, node, where: str) -> float:
        value = self.number(node, where)
        if not 0.0 <= value <= 1.0:
            self.fail(node, where, f"must be between 0 and 1, got {value:g}")
        return value


def _kind(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}" if node.value else "nothing"


# ---------------------------------------------------------------------------------------------
# Resolution


def _substitute(text: str, characters: dict[str, Character], for_token, for_name) -> str:
    """One pass over `text` replacing tokens (exact) and names (any case, whole words), so a name
    inside a token ("rex" in "<rex>") is never touched. `for_token/for_name(token, matched) -> str`."""
    if not characters:
        return text
    alternatives = []
    for n, (token, character) in enumerate(characters.items()):
        alternatives.append((len(token), f"(?P<t{n}>{re.escape(token)})"))
        alternatives.append((len(character.name), f"(?i:(?P<n{n}>{re.escape(character.name)}))"))
    pattern = "|".join(alt for _, alt in sorted(alternatives, key=lambda a: -a[0]))  # longest first
    tokens = list(characters)

    def replace(match: re.Match) -> str:
        kind, n = match.lastgroup[0], int(match.lastgroup[1:])
        return (for_token if kind == "t" else for_name)(tokens[n], match.group(0))

    return re.sub(rf"(?<!\w)(?:{pattern})(?!\w)", replace, text)


def names_to_tokens(text: str, characters: dict[str, Character]) -> str:
    """Replace each character's name (case-insensitive, whole word) with its token."""
    return _substitute(text, characters, for_token=lambda t, _: t, for_name=lambda t, _: t)


def tokens_to_words(text: str, characters: dict[str, Character]) -> str:
    """Replace each token and each name with the character's class word."""
    return _substitute(text, characters, for_token=lambda t, _: characters[t].word or characters[t].name,
                       for_name=lambda t, matched: characters[t].word or matched)


def characters_in_plot(story: Story, i: int) -> list[str]:
    """Tokens of the characters present in plot i (story order), per the rule in the module docstring."""
    plot = story.plots[i]
    if plot.characters is not None:
        return list(plot.characters)
    found: set[str] = {e.token for e in plot.entities or [] if e.token}
    _substitute(f"{plot.text}\n{plot.prompt or ''}", story.characters,
                for_token=lambda t, m: found.add(t) or m, for_name=lambda t, m: found.add(t) or m)
    return [token for token in story.characters if token in found]


def plot_settings(story: Story, i: int, preset=None) -> GenerationSettings:
    """Plot i's generation settings: the preset's (name, ModelPreset, or None for $STORYREEL_MODELS or
    "default"), then the story's recipe's (core/recipes/), then the story's defaults, then the plot's own
    frames, tau and seed. The backend is the plot's, else the story's, else the recipe's or animatediff."""
    plot = story.plots[i]
    if plot.tau is not None:
        tau = plot.tau
    else:
        present = [story.characters[t] for t in characters_in_plot(story, i)]
        overrides = [character.tau for character in present if character.tau is not None]
        tau = min(overrides) if overrides else None
    settings = GenerationSettings.for_preset(preset, recipe=story.recipe, **story.defaults)
    seed = plot.seed if plot.seed is not None else settings.seed + i
    return settings.replace(frames=plot.frames, tau=tau, seed=seed, backend=plot.backend or story.backend)


def resolved_plot_settings(story: Story, i: int, preset=None) -> dict:
    """Everything a render needs for plot i, JSON-serializable (the manifest stores it as is)."""
    plot = story.plots[i]
    prompt = names_to_tokens(plot.prompt or plot.text, story.characters)
    query = plot.query or _with_background(plot.text, plot.background)
    prompt = _with_background(prompt, plot.background)
    if story.style:
        prompt = f"{prompt.rstrip().rstrip('.')}, {story.style}"
    layout = {}  # only plots with a plan get these keys: other plots' hashes stay as they were
    if plot.background is not None:
        layout["background"] = plot.background
    if plot.entities:
        layout["layout"] = {
            "strength": DEFAULT_LAYOUT_STRENGTH if plot.layout_strength is None else plot.layout_strength,
            "guidance": plot.layout_guidance or 0.0,
            "entities": [{"name": e.name, "description": e.description, "token": e.token, "phrase": e.phrase,
                          "boxes": {str(k): list(v) for k, v in sorted(e.boxes.items())}} for e in plot.entities]}
    return {
        "index": i,
        "text": plot.text,
        "query": tokens_to_words(query, story.characters),
        "prompt": prompt,
        "negative_prompt": story.negative_prompt,
        "motion": plot.motion,
        "clip": plot.clip,
        **plot_settings(story, i, preset).to_dict(),
        "characters": [
            {
                "token": token,
                "name": story.characters[token].name,
                "pack": str(story.characters[token].pack),
                "pack_sha256": _file_sha256(story.characters[token].pack),
            }
            for token in characters_in_plot(story, i)
        ],
        **layout,
    }


def plot_to_dict(plot: Plot, boxes=list) -> dict:
    """A plot's set fields as plain data (story files, `plan --json`); `boxes`: the list type of a box."""
    data = {}
    for f in fields(plot):
        value = getattr(plot, f.name)
        if f.name == "lines" or value is None:
            continue
        if f.name == "entities":
            value = [{"name": e.name, "description": e.description, **({"token": e.token} if e.token else {}),
                      "boxes": {k: boxes(v) for k, v in sorted(e.boxes.items())}} for e in value]
        data[f.name] = value
    return data


def _with_background(text: str, background: str | None) -> str:
    """`text`, then ", <background>" unless it already says it (a final period dropped before it)."""
    if not background or background.lower() in text.lower():
        return text
    return f"{text.rstrip().rstrip('.')}, {background}"


def layout_of(settings: dict) -> Layout | None:
    """The generation `Layout` of a plot's resolved settings (`resolved_plot_settings`), or None."""
    if "layout" not in settings:
        return None
    plan = settings["layout"]
    entities = tuple(LayoutEntity(e["name"], e["phrase"], {int(k): tuple(v) for k, v in e["boxes"].items()})
                     for e in plan["entities"])
    return Layout(entities, strength=plan["strength"], guidance=plan["guidance"])


def plot_hash(story: Story, i: int, preset=None) -> str:
    """sha256 of plot i's resolved settings (pack contents included): equal hash = same render inputs.

    Covers the story side only; the render combines it with its index and model ids.
    """
    settings = json.dumps(resolved_plot_settings(story, i, preset), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(settings.encode("utf-8")).hexdigest()


def preset_defaults(preset=None) -> dict[str, Any]:
    """The `defaults:` block a new story gets: the preset's size, frames, steps and cfg, and the rest
    of GenerationSettings' story fields, so the file shows every value it will render with."""
    settings = GenerationSettings.for_preset(preset).to_dict()
    return {key: settings[key] for key in STORY_SETTINGS}


def _file_sha256(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"{path}: character pack file not found") from None
    return _cached_sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_pins(story: Story, clip_exists: Callable[[int], bool]) -> None:
    """Raise a one-line UserError for the first plot whose pinned `clip` is not in the index."""
    for i, plot in enumerate(story.plots):
        if plot.clip is not None and not clip_exists(plot.clip):
            line = plot.lines.get("clip")
            where = f"{story.source or 'story'}" + (f":{line}" if line else "")
            raise UserError(f"{where}: plots[{i}].clip: clip {plot.clip} is not in the index "
                            "(see `storyreel index ls`)")
