"""Plot planning: prose → a story file of single-event plots (`storyreel plan`).

Two planners return the same `Story` (generation/story/format.py):
- `plan_rule_based`: offline and deterministic. Sentences, then clauses joined by ", then",
  "; then", "and then" become plots; a clause without its own subject ("…, then swims") borrows the
  character names that open the clause before it. Character names become tokens in the prompt; the
  query keeps the plain names. A bare "then" inside a clause ("Rex then jumps") is an adverb, not a
  split, and pronouns are left alone.
- `plan_with_llm`: asks any OpenAI-compatible chat-completions server for a VideoDirectorGPT-style
  plan (plots with text, query, prompt, camera motion, and consistency groups saying which
  characters appear in which plots), validates the JSON and retries once, telling the model what was
  wrong. Nothing is sent anywhere unless the caller asks for it (`--llm URL`).
`write_story` writes a story file that `load_story` reads back as the same `Story`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import yaml

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic
from storyreel.generation.story.format import Character, Plot, Story, names_to_tokens
from storyreel.generation.story.llm_transport import check_timeout, check_url, post_json
from storyreel.index.motion import MOTION_LABELS

# ---------------------------------------------------------------------------------------------
# Rule-based planning

_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "prof.", "jr.", "sr.", "e.g.", "i.e.", "vs.", "etc."}
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_THEN_SPLIT = re.compile(r"\s*(?:[,;]\s*(?:and\s+)?then|\band\s+then)\b\s*,?\s*", re.IGNORECASE)
_LEADING_THEN = re.compile(r"^(?:and\s+)?then\b\s*,?\s*", re.IGNORECASE)
# Words that open a clause with its own subject, so none is borrowed from the clause before.
_SUBJECT_WORDS = {
    "a", "an", "the", "this", "that", "these", "those", "my", "your", "his", "her", "its", "our",
    "their", "i", "you", "he", "she", "it", "we", "they", "there", "everyone", "someone", "nobody",
}


def split_events(prose: str, names: tuple[str, ...] = ()) -> list[str]:
    """Single-event sentences of `prose`, capitalized and ending in punctuation.

    `names`: character names; a subject-less clause after "then" borrows the names opening the
    clause before it ("Rex barks, then runs." → "Rex barks." + "Rex runs.").
    """
    events = []
    for paragraph in re.split(r"\n\s*\n", prose):
        for sentence in _sentences(" ".join(paragraph.split())):
            sentence = _LEADING_THEN.sub("", sentence)
            if not sentence:  # a dangling "Then" or "And then" with nothing after it
                continue
            ending = sentence[-1] if sentence[-1] in "!?" else "."
            clauses = [c.strip(" .,;!?") for c in _THEN_SPLIT.split(sentence)]
            clauses = [c for c in clauses if c]
            for j in range(1, len(clauses)):
                subject = _leading_names(clauses[j - 1], names) if _needs_subject(clauses[j]) else ""
                clauses[j] = f"{subject} {clauses[j]}" if subject else clauses[j]
            for j, clause in enumerate(clauses):
                events.append(clause[0].upper() + clause[1:] + (ending if j == len(clauses) - 1 else "."))
    return events


def _sentences(text: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if text[start:match.end()].split()[-1].lower() in _ABBREVIATIONS:
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def _needs_subject(clause: str) -> bool:
    first = clause.split()[0]
    return first[0].islower() and first.lower() not in _SUBJECT_WORDS


def _leading_names(clause: str, names: tuple[str, ...]) -> str:
    """The character names that open `clause` ("Rex", "Rex and Mia"), or ""."""
    if not names:
        return ""
    name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    match = re.match(rf"(?:{name})(?:(?:,\s*|\s+)(?:and\s+)?(?:{name}))*(?!\w)", clause, re.IGNORECASE)
    return match.group(0) if match else ""


def plan_rule_based(prose: str, characters: dict[str, str], *, title: str = "Untitled",
                    packs: dict[str, str | Path] | None = None) -> Story:
    """Split prose into single-event plots; `characters`: {name: token}, e.g. {"Rex": "<rex>"}.

    Each plot gets `query` = its text (plain names) and `prompt` = its text with names → tokens.
    `packs`: {token: pack path}; a token without one gets "<token without brackets>.safetensors",
    beside the story file (what `storyreel character train ... --out` should write).
    """
    story_characters = _story_characters(characters, packs)
    events = split_events(prose, tuple(characters))
    if not events:
        raise UserError("the story text has no sentences to plan")
    plots = [Plot(text=e, query=e, prompt=names_to_tokens(e, story_characters)) for e in events]
    return Story(title=title, plots=plots, characters=story_characters)


def _story_characters(characters: dict[str, str], packs: dict[str, str | Path] | None) -> dict[str, Character]:
    packs = packs or {}
    result = {}
    for name, token in characters.items():
        default_pack = re.sub(r"\W+", "_", token).strip("_") + ".safetensors"
        result[token] = Character(pack=Path(packs.get(token, default_pack)), name=name)
    return result


# ---------------------------------------------------------------------------------------------
# LLM planning (OpenAI-compatible chat completions, standard library only)

_SYSTEM_PROMPT = """You are a film director planning a short story video made of separate shots.
Split the story into plots. Each plot is ONE event filmed as one continuous shot (no cut inside).
Reply with only a JSON object, no other text, of this form:
{"plots": [{"text": "...", "query": "...", "prompt": "...", "motion": "..."}],
 "consistency_groups": {"CHARACTER NAME": [plot indices]}}
- text: the event in one plain sentence, naming characters by their names.
- query: a short description of the visual scene, used to search a stock-video library; plain words
  only, never a character token (write the kind of thing instead, e.g. "a dog running on grass").
- prompt: the text-to-video prompt; write each character as its token, exactly as given.
- motion: the camera motion that suits the shot, one of: {labels}; or null.
- consistency_groups: for every character, the 0-based indices of the plots it appears in; a plot
  is in a character's group exactly when its prompt contains that character's token."""


class _InvalidPlan(ValueError):
    """The model's reply does not follow the plan schema; the message is sent back to it."""


def plan_with_llm(prose: str, url: str, model: str, characters: dict[str, str], timeout: float = 120.0,
                  *, title: str = "Untitled", packs: dict[str, str | Path] | None = None,
                  api_key: str | None = None) -> Story:
    """Ask an OpenAI-compatible server for a plan; `characters`: {name: token}.

    `url`: the server ("http://127.0.0.1:8080"), its "/v1" or the full ".../chat/completions".
    One retry on an invalid reply; a UserError if the server is unreachable or the retry fails too.
    """
    check_llm_options(url, timeout)
    story_characters = _story_characters(characters, packs)
    endpoint = _chat_endpoint(url)
    cast = "\n".join(f"- {name}: token {token}" for name, token in characters.items()) or "- (none)"
    messages = [
        {"role": "system", "content": _SYSTEM_PROMPT.replace("{labels}", ", ".join(MOTION_LABELS))},
        {"role": "user", "content": f"Characters:\n{cast}\n\nStory:\n{prose.strip()}"},
    ]
    for attempt in range(2):
        reply = _chat(endpoint, model, messages, timeout, api_key)
        try:
            plots = _parse_plan(reply, story_characters)
        except _InvalidPlan as problem:
            if attempt == 1:
                raise UserError(f"LLM {model} at {endpoint} returned an invalid plan twice: {problem}") from None
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": f"That plan is invalid: {problem}. "
                                            "Reply again with only the corrected JSON object."},
            ]
            continue
        return Story(title=title, plots=plots, characters=story_characters)
    raise AssertionError("unreachable")


def check_llm_options(url: str, timeout: float) -> None:
    """One-line UserErrors for a --llm URL that is not http(s) and a --llm-timeout out of range."""
    check_url(url)
    check_timeout(timeout)


def _chat_endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def _chat(endpoint: str, model: str, messages: list[dict], timeout: float, api_key: str | None) -> str:
    """One chat-completions request (generation/story/llm_transport.py); returns the assistant message text."""
    answer = post_json(endpoint, {"model": model, "messages": messages, "temperature": 0}, timeout, api_key)
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UserError(f"LLM server {endpoint} answered without choices[0].message.content") from None
    if not isinstance(content, str):
        raise UserError(f"LLM server {endpoint} answered with non-text message content")
    return content


def _parse_plan(reply: str, characters: dict[str, Character]) -> list[Plot]:
    """Validate the model's JSON plan and turn it into plots (tokens in prompts, groups → characters)."""
    start, end = reply.find("{"), reply.rfind("}")  # tolerate ```json fences and chatter around it
    try:
        plan = json.loads(reply[start:end + 1]) if start >= 0 else None
    except json.JSONDecodeError as err:
        raise _InvalidPlan(f"the reply is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(plan, dict):
        raise _InvalidPlan("the reply must be one JSON object with keys 'plots' and 'consistency_groups'")
    raw_plots = plan.get("plots")
    if not isinstance(raw_plots, list) or not raw_plots:
        raise _InvalidPlan("'plots' must be a non-empty list")

    plots = []
    for i, raw in enumerate(raw_plots):
        if not isinstance(raw, dict):
            raise _InvalidPlan(f"plots[{i}] must be an object")
        for key in ("text", "query", "prompt"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise _InvalidPlan(f"plots[{i}].{key} must be a non-empty string")
        motion = raw.get("motion")
        if motion is not None and motion not in MOTION_LABELS:
            raise _InvalidPlan(f"plots[{i}].motion {motion!r} is not one of {', '.join(MOTION_LABELS)} or null")
        for token in characters:
            if token in raw["query"]:
                raise _InvalidPlan(f"plots[{i}].query contains the token {token}; use plain words")
        prompt = names_to_tokens(raw["prompt"].strip(), characters)
        plots.append(Plot(text=raw["text"].strip(), query=raw["query"].strip(), prompt=prompt, motion=motion))

    groups = plan.get("consistency_groups", {})
    if not isinstance(groups, dict):
        raise _InvalidPlan("'consistency_groups' must be an object {character name: [plot indices]}")
    token_of = {c.name.lower(): token for token, c in characters.items()} | {t.lower(): t for t in characters}
    members: dict[str, set[int]] = {token: set() for token in characters}
    for name, indices in groups.items():
        token = token_of.get(str(name).lower())
        if token is None:
            raise _InvalidPlan(f"consistency_groups names unknown character {name!r} "
                               f"(characters: {', '.join(c.name for c in characters.values()) or 'none'})")
        if not isinstance(indices, list) or not all(type(j) is int for j in indices):
            raise _InvalidPlan(f"consistency_groups[{name!r}] must be a list of plot indices")
        for j in indices:
            if not 0 <= j < len(plots):
                raise _InvalidPlan(f"consistency_groups[{name!r}] has plot index {j}, "
                                   f"but there are only plots 0..{len(plots) - 1}")
        members[token].update(indices)
    for i, plot in enumerate(plots):
        for token, plot_indices in members.items():
            if (token in plot.prompt) != (i in plot_indices):
                state = "contains" if token in plot.prompt else "does not contain"
                raise _InvalidPlan(f"plots[{i}].prompt {state} {token} but consistency_groups "
                                   f"{'does not list' if i not in plot_indices else 'lists'} plot {i} "
                                   f"for {characters[token].name}")
        plot.characters = [token for token in characters if i in members[token]]
    return plots


# ---------------------------------------------------------------------------------------------
# Writing story files


def write_story(story: Story, path: str | Path) -> None:
    """Write `story` as YAML (atomically) that `load_story` reads back as an equal `Story`.

    Absolute pack paths are written relative to the new file's folder; relative ones as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, story_yaml(story, path))


def story_yaml(story: Story, path: str | Path) -> str:
    """The YAML `write_story` writes for `story` at `path` (pack paths relative to its folder)."""
    path = Path(path)
    folder = path.resolve().parent
    characters = {}
    for token, character in story.characters.items():
        pack = character.pack
        if pack.is_absolute():
            pack = Path(os.path.relpath(pack, folder))
        entry = {"pack": pack.as_posix(), "name": character.name}
        entry |= {key: getattr(character, key) for key in ("word", "tau") if getattr(character, key) is not None}
        characters[token] = entry
    data = {
        "title": story.title,
        "characters": characters,
        "style": story.style,
        "negative_prompt": story.negative_prompt,
        "defaults": dict(story.defaults),
        **({"backend": story.backend} if story.backend else {}),
        "plots": [
            {f.name: getattr(plot, f.name) for f in dataclasses.fields(plot)
             if f.name != "lines" and getattr(plot, f.name) is not None}
            for plot in story.plots
        ],
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
