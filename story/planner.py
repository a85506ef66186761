"""Plot planning: prose → a story file of single-event plots (`storyreel plan`).

Two planners return the same `Story` (story/format.py):
- `plan_rule_based`: offline and deterministic. Sentences, then clauses joined by ", then",
  "; then", "and then" become plots; a clause without its own subject ("…, then swims") borrows the
  character names that open the clause before it. Character names become tokens in the prompt; the
  query keeps the plain names. A bare "then" inside a clause ("Rex then jumps") is an adverb, not a
  split, and pronouns are left alone. Boxes only when asked (`layout`, `plan --layout`): side-by-side
  boxes know nothing of where a retrieved clip puts its subject, and they turn on layout control.
- `plan_with_llm`: asks any OpenAI-compatible chat-completions server for a VideoDirectorGPT plan
  in its two stages (plots with entities, backgrounds, τ, layout strength and consistency groups;
  then entity boxes at keyframes; story/plan.py), validates each reply and retries once,
  telling the model what was wrong. Nothing is sent anywhere unless the caller asks for it (`--llm URL`).
`plan_story` is the one front door `storyreel plan` and the web app's Plan button call: it picks the
planner from `PlanOptions` and gives the story its model preset's defaults. `parse_cast` reads the
characters both take as "NAME=TOKEN[=PACK]" specs.
`write_story` writes a story file that `load_story` reads back as the same `Story`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic
from storyreel.core.models import resolve_preset
from storyreel.index.motion import MOTION_LABELS
from storyreel.story import plan
from storyreel.story.format import Character, Plot, Story, names_to_tokens, plot_to_dict, preset_defaults
from storyreel.story.llm_transport import check_timeout, check_url, post_json

# ---------------------------------------------------------------------------------------------
# The front door: characters and options in, a Story out


@dataclass(frozen=True)
class Cast:
    """The story's characters: `tokens` {name in the prose: token}, `packs` {token: pack file} (a token
    without a pack gets the default name, see `plan_rule_based`)."""

    tokens: dict[str, str] = field(default_factory=dict)
    packs: dict[str, Path] = field(default_factory=dict)


def parse_cast(specs: Iterable[str], flag: str = "--character",
               resolve_pack: Callable[[str], Path] | None = None) -> Cast:
    """The Cast of "NAME=TOKEN" or "NAME=TOKEN=PACK" specs (blank ones skipped, spaces around parts ignored).

    `flag` names the specs in errors; `resolve_pack(text)` turns a PACK into a path (default: `~`
    expanded, relative to the current folder; the web app confines it to its folders).
    """
    resolve_pack = resolve_pack or (lambda text: Path(text).expanduser().resolve())
    tokens, packs = {}, {}
    for spec in specs:
        if not spec.strip():
            continue
        parts = [part.strip() for part in spec.split("=", 2)]
        if len(parts) < 2 or not parts[0] or not parts[1] or re.search(r"\s", parts[1]):
            raise UserError(f"{flag} {spec!r}: expected NAME=TOKEN or NAME=TOKEN=PACK, e.g. Rex=<rex>")
        tokens[parts[0]] = parts[1]
        if len(parts) == 3:
            packs[parts[1]] = resolve_pack(parts[2])
    return Cast(tokens, packs)


def read_prose(path: Path) -> str:
    """The story text of the file at `path`; a one-line UserError if it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: the story text is not UTF-8 (byte {err.start}); save it as UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the story text ({err.strerror or err})") from None


@dataclass(frozen=True)
class LLMOptions:
    """An OpenAI-compatible chat-completions server to plan with (`storyreel plan --llm URL --llm-model NAME`).

    `url`: the server ("http://127.0.0.1:8080"), its "/v1" or the full ".../chat/completions";
    `timeout`: seconds one request may take in all; `api_key` (default $STORYREEL_LLM_API_KEY) is sent
    as a bearer token if set.
    """

    url: str
    model: str
    timeout: float = 120.0
    api_key: str | None = field(default_factory=lambda: os.environ.get("STORYREEL_LLM_API_KEY"), repr=False)

    def check(self) -> None:
        """One-line UserErrors for a missing model, a URL that is not http(s) and a timeout out of range."""
        if not (self.model or "").strip():
            raise UserError("--llm needs --llm-model NAME (the model the server should use)")
        check_url(self.url)
        check_timeout(self.timeout)


@dataclass(frozen=True)
class PlanOptions:
    """How `plan_story` plans: `llm` None plans by rules (nothing is sent anywhere); `preset` is the model
    preset whose size, frames, steps and cfg become the story's defaults."""

    title: str = "Untitled"
    preset: str | None = None
    llm: LLMOptions | None = None
    layout: bool = False  # rule plans: each plot's characters as entities with side-by-side boxes


def plan_story(prose: str, cast: Cast, options: PlanOptions) -> Story:
    """Prose -> a Story of single-event plots with the preset's defaults, by rules or by the LLM in
    `options` (whose boxes then fit the preset's frame count)."""
    defaults = preset_defaults(resolve_preset(options.preset))
    if options.llm is not None:
        story = plan_with_llm(prose, cast.tokens, options.llm, title=options.title, packs=cast.packs,
                              frames=defaults["frames"])
    else:
        story = plan_rule_based(prose, cast.tokens, title=options.title, packs=cast.packs, layout=options.layout)
    return dataclasses.replace(story, defaults=defaults)


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
                    packs: dict[str, str | Path] | None = None, layout: bool = False) -> Story:
    """Split prose into single-event plots; `characters`: {name: token}, e.g. {"Rex": "<rex>"}.

    Each plot gets `query` = its text (plain names) and `prompt` = its text with names → tokens; with
    `layout`, its characters as entities side by side in order of mention (one consistency group each).
    `packs`: {token: pack path}; a token without one gets "<token without brackets>.safetensors",
    beside the story file (what `storyreel character train ... --out` should write).
    """
    story_characters = _story_characters(characters, packs)
    events = split_events(prose, tuple(characters))
    if not events:
        raise UserError("the story text has no sentences to plan")
    plots = [Plot(text=e, query=e, prompt=names_to_tokens(e, story_characters)) for e in events]
    consistency = plan.default_layouts(plots, story_characters) if layout else {}
    return Story(title=title, plots=plots, characters=story_characters, consistency=consistency)


def _story_characters(characters: dict[str, str], packs: dict[str, str | Path] | None) -> dict[str, Character]:
    packs = packs or {}
    result = {}
    for name, token in characters.items():
        default_pack = re.sub(r"\W+", "_", token).strip("_") + ".safetensors"
        result[token] = Character(pack=Path(packs.get(token, default_pack)), name=name)
    return result


# ---------------------------------------------------------------------------------------------
# LLM planning (OpenAI-compatible chat completions, standard library only)

def plan_with_llm(prose: str, characters: dict[str, str], llm: LLMOptions, *, title: str = "Untitled",
                  packs: dict[str, str | Path] | None = None, frames: int = 16) -> Story:
    """Ask the `llm` server for a VideoDirectorGPT plan; `characters`: {name: token}.

    Two stages (story/plan.py): plots, entities, backgrounds and consistency groups, then
    each plot's entity boxes at keyframes of a `frames`-frame clip. Each stage gets one retry
    with the validation error; a UserError if the server is unreachable or a retry fails too.
    """
    llm.check()
    story_characters = _story_characters(characters, packs)
    endpoint = _chat_endpoint(llm.url)
    cast = "\n".join(f"- {name}: token {token}" for name, token in characters.items()) or "- (none)"
    stage1 = [
        {"role": "system", "content": plan.STAGE1_PROMPT.replace("{labels}", ", ".join(MOTION_LABELS))},
        {"role": "user", "content": f"Characters:\n{cast}\n\nStory:\n{prose.strip()}"},
    ]
    plots, _, consistency = _ask(llm, endpoint, stage1, "plan",
                                 lambda reply: plan.parse_stage1(reply, story_characters))
    if any(p.entities for p in plots):
        stage2 = [{"role": "system", "content": plan.STAGE2_PROMPT.replace("{last}", str(frames - 1))},
                  {"role": "user", "content": plan.stage2_request(plots, frames)}]
        plots = _ask(llm, endpoint, stage2, "layout", lambda reply: plan.parse_stage2(reply, plots, frames))
    return Story(title=title, plots=plots, characters=story_characters, consistency=consistency)


def _ask(llm: LLMOptions, endpoint: str, messages: list[dict], what: str, parse):
    """`parse(reply)` of the model's answer; one retry that tells the model what was wrong."""
    for attempt in range(2):
        reply = _chat(llm, endpoint, messages)
        try:
            return parse(reply)
        except plan.InvalidPlan as problem:
            if attempt == 1:
                raise UserError(f"LLM {llm.model} at {endpoint} returned an invalid {what} twice: {problem}") from None
            messages = messages + [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": f"That {what} is invalid: {problem}. "
                                            "Reply again with only the corrected JSON object."},
            ]
    raise AssertionError("unreachable")


def _chat_endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def _chat(llm: LLMOptions, endpoint: str, messages: list[dict]) -> str:
    """One chat-completions request (story/llm_transport.py); returns the assistant message text."""
    answer = post_json(endpoint, {"model": llm.model, "messages": messages, "temperature": 0}, llm.timeout,
                       llm.api_key)
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UserError(f"LLM server {endpoint} answered without choices[0].message.content") from None
    if not isinstance(content, str):
        raise UserError(f"LLM server {endpoint} answered with non-text message content")
    return content


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
        **({"recipe": story.recipe} if story.recipe else {}),
        **({"consistency": story.consistency} if story.consistency else {}),
        "plots": [plot_to_dict(plot, boxes=_FlowList) for plot in story.plots],
    }
    return yaml.dump(data, Dumper=_StoryDumper, sort_keys=False, allow_unicode=True, width=1000)


class _FlowList(list):
    """A box: written on one line, [x0, y0, x1, y1]."""


class _StoryDumper(yaml.SafeDumper):
    pass


_StoryDumper.add_representer(_FlowList, lambda dumper, v: dumper.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                                    flow_style=True))
