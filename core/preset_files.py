"""Preset files: every model preset is a small JSON file (docs/presets.md).

The built-in presets ship in core/presets/; a user's own are read from `user_preset_dir()`
($STORYREEL_PRESETS, else $XDG_CONFIG_HOME/storyreel/presets, else ~/.config/storyreel/presets) or given
as a path (`--models my/preset.json`, a story file's `models: {preset: ...}`). A preset's name is its
file name without `.json`. A file may `extends` a built-in preset and give only what differs. Paths
inside a file are relative to the file; `clip` may be such a path (a local open_clip folder) instead of
an object. A bad field is one UserError line naming the file, the field
and what is expected.

    find_preset("tiny"), find_preset("my/preset.json")   # ModelPreset (read once per file version)
    presets_by_name()                                    # every built-in and user preset
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from pathlib import Path

from storyreel.core.errors import UserError
from storyreel.core.models import (
    ANIMATEDIFF_DDIM,
    ENV_VAR,
    LOCAL_DIR,
    OPEN_CLIP_CONFIG,
    ClipSpec,
    GeneratorSpec,
    ModelPreset,
    SchedulerSpec,
    is_clip_folder,
    local_or_repo,
)

BUILT_IN_DIR = Path(__file__).resolve().parent / "presets"
USER_DIR_VAR = "STORYREEL_PRESETS"

# The fields of a preset file, per object: field -> (kind, required). A kind is a nested object's
# table name or one of KINDS.
FIELDS = {
    "preset": {"description": ("text", False), "extends": ("text", False), "clip": ("clip", True),
               "depth": ("depth", True), "generator": ("generator", True)},
    "clip": {"architecture": ("text", True), "pretrained": ("text", False), "hf_repo": ("text", False),
             "config": ("object", False), "seed": ("integer", False)},
    "generator": {"base": ("model", True), "motion_adapter": ("model", True), "controlnet": ("model", True),
                  "height": ("size", True), "width": ("size", True), "frames": ("count", True),
                  "steps": ("count", True), "cfg": ("number", True), "train_size": ("size", True),
                  "seed": ("integer", False), "scheduler": ("scheduler", False)},
    "scheduler": {"name": ("text", True), "config": ("object", False)},
}
# kind -> (is the JSON value acceptable, what is expected)
KINDS = {
    "text": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 8 == 0,
             "a positive multiple of 8"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "model": (lambda v: isinstance(v, str) and v.strip() != "",
              "a Hugging Face repo id ORG/NAME, or a path relative to the preset file"),
    "depth": (lambda v: isinstance(v, str) and v.strip() != "",
              "a depth registry name, a Hugging Face repo id ORG/NAME, or a folder relative to the preset file"),
}


def user_preset_dir() -> Path:
    """Where a user's own presets (*.json) are looked for."""
    if os.environ.get(USER_DIR_VAR):
        return Path(os.environ[USER_DIR_VAR]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "storyreel" / "presets"


def preset_files() -> dict[str, Path]:
    """Name -> file of every preset: the built-in ones, then the user's (a built-in name is the built-in)."""
    files = {path.stem: path for path in sorted(BUILT_IN_DIR.glob("*.json"))}
    user_dir = user_preset_dir()
    for path in sorted(user_dir.glob("*.json")) if user_dir.is_dir() else ():
        files.setdefault(path.stem, path)
    return files


def presets_by_name() -> dict[str, ModelPreset]:
    """Every preset, read and checked (a bad user preset file is a UserError naming it)."""
    return {name: read_preset(path) for name, path in preset_files().items()}


def find_preset(name_or_path: str) -> ModelPreset:
    """A preset by name (built-in first, then the user's) or by the path of its .json file."""
    if name_or_path.endswith(".json") or "/" in name_or_path or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"model preset file {name_or_path} not found (--models / ${ENV_VAR})")
        return read_preset(path)
    files = preset_files()
    if name_or_path not in files:
        raise UserError(f"unknown model preset {name_or_path!r} (--models / ${ENV_VAR}); choose one of "
                        f"{', '.join(files)} or give a preset .json file (docs/presets.md)")
    return read_preset(files[name_or_path])


def read_preset(path: Path) -> ModelPreset:
    """The preset a file defines; read once per version of the file (the same object every time)."""
    path = Path(path).resolve()
    return _read_cached(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_cached(path: Path, mtime_ns: int) -> ModelPreset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the preset file ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object with clip, depth and generator (docs/presets.md)")
    data = _extended(data, path)
    data = _checked(data, "preset", "", path)
    return _build(data, path)


def _extended(data: dict, path: Path) -> dict:
    """`extends: NAME`: the built-in preset NAME's fields, with this file's on top (generator fields one by one)."""
    if "extends" not in data:
        return data
    parent_name = data["extends"]
    parent = BUILT_IN_DIR / f"{parent_name}.json" if isinstance(parent_name, str) else None
    if parent is None or not parent.is_file():
        built_in = ", ".join(p.stem for p in sorted(BUILT_IN_DIR.glob("*.json")))
        raise UserError(f"{path}: extends: expected the name of a built-in preset ({built_in}), got "
                        f"{_shown(parent_name)}")
    base = json.loads(parent.read_text(encoding="utf-8"))
    base.pop("description", None)  # says what the built-in is, not what this file makes of it
    merged = {**base, **data}
    if isinstance(data.get("generator"), dict):
        merged["generator"] = {**base["generator"], **data["generator"]}
    return merged


def _checked(data: dict, table: str, where: str, path: Path) -> dict:
    """`data` with every field of FIELDS[table] checked, nested objects too; `where`: the object's field path."""
    fields = FIELDS[table]
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"fields: {', '.join(fields)}"
            raise UserError(f"{path}: {where}{key}: unknown field ({hint})")
    checked = {}
    for key, (kind, required) in fields.items():
        name = f"{where}{key}"
        if key not in data or data[key] is None:
            if required:
                what = "an object" if kind in FIELDS else KINDS[kind][1]
                raise UserError(f"{path}: {name}: missing; expected {what} (docs/presets.md)")
            continue
        value = data[key]
        if kind == "clip" and isinstance(value, str):  # a local open_clip folder, relative to the file
            folder = (path.parent / Path(value).expanduser()).resolve()
            if not is_clip_folder(folder):
                raise UserError(f"{path}: {name}: expected an object or the path of an open_clip folder, got "
                                f"{_shown(value)} ({folder} holds no {OPEN_CLIP_CONFIG} and checkpoint)")
            checked[key] = f"{LOCAL_DIR}{folder}"
            continue
        if kind in FIELDS:
            if not isinstance(value, dict):
                raise UserError(f"{path}: {name}: expected an object, got {_shown(value)}")
            checked[key] = _checked(value, kind, f"{name}.", path)
            continue
        accepts, expected = KINDS[kind]
        if not accepts(value):
            raise UserError(f"{path}: {name}: expected {expected}, got {_shown(value)}")
        if kind in ("model", "depth"):
            value = local_or_repo(value, f"{path}: {name}", base_dir=path.parent, depth=kind == "depth")
        checked[key] = value
    return checked


def _build(data: dict, path: Path) -> ModelPreset:
    clip = data["clip"] if isinstance(data["clip"], dict) else {"architecture": data["clip"]}
    if clip.get("pretrained") and not clip.get("hf_repo"):
        raise UserError(f"{path}: clip.hf_repo: missing; a pretrained tag needs the Hugging Face repo its "
                        "weights are in")
    generator = dict(data["generator"])
    scheduler = generator.pop("scheduler", None)
    generator["scheduler"] = SchedulerSpec(**scheduler) if scheduler else ANIMATEDIFF_DDIM
    return ModelPreset(name=path.stem, clip=ClipSpec(**clip), depth=data["depth"],
                       generator=GeneratorSpec(**generator), description=data.get("description", ""),
                       file=str(path), extends=data.get("extends"))


def _shown(value) -> str:
    """A JSON value as a message quotes it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
