"""VideoDirectorGPT's two-stage video plan, as asked of an LLM and checked before it becomes a story.

Stage 1 (`STAGE1_PROMPT`, `parse_stage1`): plots (text, query, prompt, camera motion, background, the
entities present, a depth clamp τ and a layout strength), every entity's one description, and
consistency groups for entities and backgrounds.
Stage 2 (`STAGE2_PROMPT`, `parse_stage2`): per plot, each entity's boxes [x0, y0, x1, y1] at
keyframes (snapped to the 0.05 grid).

A parser raises `InvalidPlan` naming the plot and field; story/planner.py sends that
message back to the model once and then fails with it. `default_layouts` is the rule-based planner's
layout: the characters of a plot side by side in order of mention.
"""

from __future__ import annotations

import dataclasses
import json
import re

from storyreel.generation.layout import box_problem, snap_box, spread_boxes
from storyreel.index.motion import MOTION_LABELS
from storyreel.story.format import Character, Entity, Plot, names_to_tokens

STAGE1_PROMPT = """You are a film director planning a short story video made of separate shots.
Split the story into plots. Each plot is ONE event filmed as one continuous shot (no cut inside).
Reply with only a JSON object, no other text, of this form:
{"plots": [{"text": "...", "query": "...", "prompt": "...", "motion": "...", "background": "...",
            "entities": ["NAME", ...], "tau": 0.5, "layout_strength": 0.4}],
 "entities": {"NAME": "description"},
 "consistency": {"entities": {"NAME": [plot indices]}, "backgrounds": {"NAME": [plot indices]}}}
- text: the event in one plain sentence, naming characters by their names.
- query: a short description of the visual scene, used to search a stock-video library; plain words
  only, never a character token (write the kind of thing instead, e.g. "a dog running on grass").
- prompt: the text-to-video prompt; write each character as its token, exactly as given, and every
  other entity as its description, word for word.
- motion: the camera motion that suits the shot, one of: {labels}; or null.
- background: the scene behind the entities, a few words; plots in one place use the same words.
- entities: the names of the things placed in the frame (characters by their names).
- entities (top level): one description per entity, the same in every plot (characters: their name).
- tau: 0 to 1, how long the source clip's depth guides the shot: low (0.2) where a character's own
  shape must win, high (0.8) where the source motion matters.
- layout_strength: 0 to 1, how long the entity boxes steer the shot (0.3 to 0.6 is typical).
- consistency.entities: for every entity, the 0-based indices of the plots it appears in (exactly
  the plots that list it); consistency.backgrounds: a name for each place and the plots set there."""

STAGE2_PROMPT = """You are a film director laying out the shots of a planned story video.
For every plot, place each of its entities in the frame with boxes [x0, y0, x1, y1]: fractions of
the frame width and height (0 = left/top, 1 = right/bottom), x0 < x1, y0 < y1, on a 0.05 grid,
at keyframes (frame indices from 0 to {last}); the box between keyframes is interpolated.
Reply with only a JSON object, no other text, of this form:
{"layouts": [{"plot": 0, "boxes": {"NAME": {"0": [x0, y0, x1, y1], "{last}": [x0, y0, x1, y1]}}}]}"""


class InvalidPlan(ValueError):
    """The model's reply does not follow the plan schema; the message is sent back to it."""


def reply_json(reply: str, keys: str) -> dict:
    """The JSON object in `reply` (``` fences and chatter around it tolerated)."""
    start, end = reply.find("{"), reply.rfind("}")
    try:
        data = json.loads(reply[start:end + 1]) if start >= 0 else None
    except json.JSONDecodeError as err:
        raise InvalidPlan(f"the reply is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(data, dict):
        raise InvalidPlan(f"the reply must be one JSON object with keys {keys}")
    return data


def parse_stage1(reply: str, characters: dict[str, Character]) -> tuple[list[Plot], dict, dict]:
    """(plots without boxes yet, {entity name: description}, consistency groups) from a stage-1 reply."""
    plan = reply_json(reply, "'plots', 'entities' and 'consistency'")
    raw_plots = plan.get("plots")
    if not isinstance(raw_plots, list) or not raw_plots:
        raise InvalidPlan("'plots' must be a non-empty list")
    descriptions = plan.get("entities", {})
    if not isinstance(descriptions, dict) or not all(
            isinstance(d, str) and d.strip() for d in descriptions.values()):
        raise InvalidPlan("'entities' must be an object {entity name: description}")
    token_of = {c.name.lower(): token for token, c in characters.items()} | {t.lower(): t for t in characters}

    plots = []
    for i, raw in enumerate(raw_plots):
        if not isinstance(raw, dict):
            raise InvalidPlan(f"plots[{i}] must be an object")
        for key in ("text", "query", "prompt"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise InvalidPlan(f"plots[{i}].{key} must be a non-empty string")
        motion = raw.get("motion")
        if motion is not None and motion not in MOTION_LABELS:
            raise InvalidPlan(f"plots[{i}].motion {motion!r} is not one of {', '.join(MOTION_LABELS)} or null")
        for token in characters:
            if token in raw["query"]:
                raise InvalidPlan(f"plots[{i}].query contains the token {token}; use plain words")
        background = raw.get("background")
        if background is not None and (not isinstance(background, str) or not background.strip()):
            raise InvalidPlan(f"plots[{i}].background must be a non-empty string or null")
        fractions = {}
        for key in ("tau", "layout_strength"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= 1):
                raise InvalidPlan(f"plots[{i}].{key} must be a number from 0 to 1, got {value!r}")
            fractions[key] = None if value is None else float(value)
        names = raw.get("entities", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
            raise InvalidPlan(f"plots[{i}].entities must be a list of distinct entity names")
        prompt = names_to_tokens(raw["prompt"].strip(), characters)
        entities = []
        for name in names:
            token = token_of.get(name.lower())
            if name not in descriptions and token is None:
                raise InvalidPlan(f"plots[{i}].entities names {name!r}, which 'entities' does not describe")
            description = descriptions.get(name) or characters[token].name
            if token is None and description.lower() not in prompt.lower():
                raise InvalidPlan(f"plots[{i}].prompt must contain entity {name!r} as its description "
                                  f"{description!r}, word for word")
            entities.append(Entity(name, description.strip(), {}, token))
        plots.append(Plot(text=raw["text"].strip(), query=raw["query"].strip(), prompt=prompt, motion=motion,
                          background=background.strip() if background else None, entities=entities or None,
                          tau=fractions["tau"], layout_strength=fractions["layout_strength"]))

    consistency = _groups(plan.get("consistency", {}), plots)
    for token, character in characters.items():  # a character's token is in exactly the plots that list it
        for i, plot in enumerate(plots):
            listed = any(e.token == token for e in plot.entities or [])
            if (token in plot.prompt) != listed:
                state = "contains" if token in plot.prompt else "does not contain"
                raise InvalidPlan(f"plots[{i}].prompt {state} {token} but plots[{i}].entities "
                                  f"{'does not name' if not listed else 'names'} {character.name}")
    for plot in plots:
        plot.characters = [token for token in characters if token in plot.prompt]
    return plots, descriptions, consistency


def _groups(groups, plots: list[Plot]) -> dict[str, dict[str, list[int]]]:
    if not isinstance(groups, dict) or set(groups) - {"entities", "backgrounds"}:
        raise InvalidPlan("'consistency' must be an object {\"entities\": {...}, \"backgrounds\": {...}}")
    result = {}
    for kind in ("entities", "backgrounds"):
        named = groups.get(kind, {})
        if not isinstance(named, dict):
            raise InvalidPlan(f"consistency.{kind} must be an object {{name: [plot indices]}}")
        result[kind] = {}
        for name, indices in named.items():
            where = f"consistency.{kind}[{name!r}]"
            if not isinstance(indices, list) or not indices or not all(type(j) is int for j in indices):
                raise InvalidPlan(f"{where} must be a non-empty list of plot indices")
            for j in indices:
                if not 0 <= j < len(plots):
                    raise InvalidPlan(f"{where} has plot index {j}, but there are only plots 0..{len(plots) - 1}")
            if kind == "entities":
                listing = [i for i, p in enumerate(plots) if any(e.name == name for e in p.entities or [])]
                if not listing:
                    raise InvalidPlan(f"{where} names an entity no plot lists")
                if sorted(set(indices)) != listing:
                    wrong = min(set(indices) ^ set(listing))
                    raise InvalidPlan(f"{where} {'lists' if wrong in indices else 'leaves out'} plot {wrong}, but "
                                      f"plots[{wrong}].entities {'does not name' if wrong in indices else 'names'} "
                                      f"{name!r}")
            else:
                texts = {plots[j].background for j in indices if plots[j].background}
                if len(texts) > 1:
                    raise InvalidPlan(f"{where} groups plots whose backgrounds differ ({' / '.join(sorted(texts))}); "
                                      "give them the same background words")
            result[kind][name] = sorted(set(indices))
    return {kind: named for kind, named in result.items() if named}


def stage2_request(plots: list[Plot], frames: int) -> str:
    """The stage-2 user message: the plan so far, as JSON."""
    scenes = [{"plot": i, "text": p.text, "background": p.background,
               "entities": {e.name: e.description for e in p.entities or []}} for i, p in enumerate(plots)]
    return f"Frames per plot: {frames} (keyframes 0 to {frames - 1}).\nPlan:\n" + json.dumps({"plots": scenes})


def parse_stage2(reply: str, plots: list[Plot], frames: int) -> list[Plot]:
    """The plots with every entity's boxes from a stage-2 reply (snapped to the box grid)."""
    data = reply_json(reply, "'layouts'")
    layouts = data.get("layouts")
    if not isinstance(layouts, list):
        raise InvalidPlan("'layouts' must be a list of {\"plot\": index, \"boxes\": {...}}")
    by_plot = {}
    for n, layout in enumerate(layouts):
        if not isinstance(layout, dict) or type(layout.get("plot")) is not int \
                or not 0 <= layout["plot"] < len(plots) or not isinstance(layout.get("boxes"), dict):
            raise InvalidPlan(f"layouts[{n}] must be {{\"plot\": index 0..{len(plots) - 1}, \"boxes\": {{...}}}}")
        by_plot[layout["plot"]] = layout["boxes"]
    out = []
    for i, plot in enumerate(plots):
        entities = []
        for entity in plot.entities or []:
            where = f"plots[{i}].entities[{entity.name!r}].boxes"
            keyframes = by_plot.get(i, {}).get(entity.name)
            if not isinstance(keyframes, dict) or not keyframes:
                raise InvalidPlan(f"{where}: missing; give keyframes {{frame: [x0, y0, x1, y1]}} for every entity")
            boxes = {}
            for key, box in keyframes.items():
                if not re.fullmatch(r"\d+", str(key)) or int(key) >= frames:
                    raise InvalidPlan(f"{where}: keyframe {key!r} must be a frame index from 0 to {frames - 1}")
                problem = box_problem(box)
                if problem:
                    raise InvalidPlan(f"{where}[{key}]: {problem}")
                boxes[int(key)] = snap_box(box)
            entities.append(Entity(entity.name, entity.description, dict(sorted(boxes.items())), entity.token))
        out.append(dataclasses.replace(plot, entities=entities or None))
    return out


def default_layouts(plots: list[Plot], characters: dict[str, Character]) -> dict[str, dict[str, list[int]]]:
    """Give each plot its characters as entities, side by side in order of mention (one keyframe), and
    return the entity consistency groups (a character's plots)."""
    groups: dict[str, list[int]] = {}
    for i, plot in enumerate(plots):
        prompt = plot.prompt or ""
        present = sorted((prompt.index(token), token) for token in characters if token in prompt)
        boxes = spread_boxes(len(present))
        plot.entities = [Entity(characters[token].name, characters[token].name, {0: box}, token)
                         for (_, token), box in zip(present, boxes)] or None
        for _, token in present:
            groups.setdefault(characters[token].name, []).append(i)
    return {"entities": groups} if groups else {}
