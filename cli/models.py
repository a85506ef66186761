"""`storyreel models` and `storyreel doctor` (see cli/__init__.py and docs/CLI.md).

    storyreel models [--json]     every preset (built-in and the user's own, core/preset_files.py), its
                                  file, its components, where each is looked for, whether it is there,
                                  how to fetch it
    storyreel doctor [--json]     torch and CUDA, ffmpeg, the Hugging Face cache, each preset's weights;
                                  exit 1 when the selected preset cannot run here

Presence is checked with the loaders' own lookups (the Hugging Face cache only, never the network),
so "present" means the load would find its files. They report on every package's models, so they sit
beside the dispatcher, above the packages (storyreel.core stays below them all).
"""

from __future__ import annotations

import json
import sys

from storyreel.cli.common import add_command


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    add_command(commands, "models", _run_models,
                "list model presets, their components and where their weights are looked for", models=None,
                description="List every model preset (--models / $STORYREEL_MODELS): the built-in ones and "
                            "your own (*.json in $STORYREEL_PRESETS, else ~/.config/storyreel/presets; "
                            "docs/presets.md), each one's CLIP, depth model and generator, where each "
                            "component's weights are looked for in the Hugging Face cache, and the `hf "
                            "download` command of each missing one.")
    add_command(commands, "doctor", _run_doctor,
                "check torch/CUDA, ffmpeg, the Hugging Face cache and every preset's weights", models=None,
                json="print the checks as one JSON document",
                description="Check what storyreel needs on this machine: torch and CUDA, the ffmpeg that "
                            "writes mp4, the Hugging Face cache, and each preset's weights (with the "
                            "`hf download` command of each missing file). Exit 1 when the selected preset "
                            "($STORYREEL_MODELS, else default) cannot run here.")


def _run_models(args) -> int:
    from dataclasses import asdict

    from storyreel.core.hub import hf_cache_dir
    from storyreel.core.models import list_presets, resolve_preset
    from storyreel.core.preset_files import user_preset_dir
    from storyreel.core.recipes import list_recipes

    selected = resolve_preset(None)  # what --models left out would pick ($STORYREEL_MODELS, else default)
    defaults = ("height", "width", "frames", "steps", "cfg", "train_size")
    report = {"selected": selected, "hf_cache": hf_cache_dir(), "user_presets": str(user_preset_dir()), "presets": {
        name: {"file": preset.file, "description": preset.description, "components": describe(preset),
               "scheduler": asdict(preset.generator.scheduler),
               "defaults": {k: getattr(preset.generator, k) for k in defaults}}
        for name, preset in list_presets().items()},
        "recipes": {name: {"paper": r.paper, "generation": r.generation, "training": r.training, "sources": r.sources}
                    for name, r in list_recipes().items()}}
    if args.json:
        _print_json(report)
        return 0
    for name, preset in report["presets"].items():
        print(f"{name}{'  (selected)' if name == selected else ''}  {preset['file']}")
        if preset["description"]:
            print(f"  {preset['description']}")
        _print_components(preset["components"])
        scheduler = preset["scheduler"]
        overrides = " ".join(f"{k}={v}" for k, v in scheduler["config"].items())
        print(f"  {'scheduler':<15} {scheduler['name']} {overrides}")
        d = preset["defaults"]
        print(f"  {'defaults':<15} {d['width']}x{d['height']}, {d['frames']} frames, {d['steps']} steps, "
              f"cfg {d['cfg']}, character training {d['train_size']}px")
    for name, recipe in report["recipes"].items():
        print(f"recipe {name}: {recipe['paper']}")
        for part in ("generation", "training"):
            for key, value in recipe[part].items():
                print(f"  {part + '.' + key:<28} {json.dumps(value):<24} {recipe['sources'].get(part + '.' + key, '')}")
    print(f"Hugging Face cache: {report['hf_cache']}")
    print(f"your presets: {report['user_presets']}/*.json (docs/presets.md)")
    return 0


def _print_components(components: dict) -> None:
    for role, c in components.items():
        status = "" if c["repo"] is None else "present  " if c["present"] else "missing  "
        print(f"  {role:<15} {c['id']:<45} {status}{c['where']}")
        if not c["present"] and c["fetch"]:
            print(f"  {'':<15} get it: {c['fetch']}")


def _print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def describe(preset) -> dict[str, dict]:
    """Per component: its id, where it is looked for (`repo` and `files`; none: built in code), whether it
    is there, and the `hf download` command that fetches its missing files (`fetch`)."""
    from storyreel.core.hub import MODEL_FILES, SD15_FILES, hf_file, hf_folder
    from storyreel.core.models import HF_HUB, OPEN_CLIP_WEIGHTS, is_built_in
    from storyreel.depth.registry import TRANSFORMERS_FILES, get_config
    from storyreel.index.embed import OPEN_CLIP_CONFIG, find_checkpoint

    clip, generator = preset.clip, preset.generator
    # CLIP checkpoints are alternatives (first found wins, in open_clip's order): fetch the first.
    clip_files, clip_fetch = " or ".join(OPEN_CLIP_WEIGHTS), [OPEN_CLIP_WEIGHTS[0]]
    if clip.architecture.startswith(HF_HUB):
        clip_files, clip_fetch = f"{OPEN_CLIP_CONFIG} and {clip_files}", [OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS[0]]

    def clip_lookup():
        if clip.architecture.startswith(HF_HUB):
            hf_file(clip.weights_repo, OPEN_CLIP_CONFIG, "CLIP")
        return find_checkpoint(clip)

    local_clip = str(clip.local_folder) if clip.local_folder is not None else None
    components = {"clip": _component(clip.model_id, clip.seed, clip.weights_repo, clip_files, clip_fetch,
                                     clip_lookup, local=local_clip)}
    if "/" in preset.depth and not preset.depth.startswith("/"):  # a transformers depth model's repo
        components["depth"] = _component(preset.depth, None, preset.depth, " ".join(TRANSFORMERS_FILES),
                                         TRANSFORMERS_FILES,
                                         lambda: hf_folder(preset.depth, "depth", TRANSFORMERS_FILES))
    else:
        depth = get_config(preset.depth)
        repo, filename = depth.hf_weights or (None, None)
        local = depth.folder if depth.kind == "transformers" else None
        components["depth"] = _component(depth.name, depth.random_init_seed, repo, filename, [filename],
                                         lambda: hf_file(repo, filename, "depth"), local=local)
    for role, files in (("base", SD15_FILES), ("motion_adapter", MODEL_FILES), ("controlnet", MODEL_FILES)):
        model = getattr(generator, role)
        local = model if model.startswith("/") else None
        repo = None if is_built_in(model) or local else model
        components[role] = _component(model, generator.seed, repo, " ".join(files), files,
                                      lambda repo=repo, role=role, files=files: hf_folder(repo, role, files),
                                      local=local)
    return components


def _component(model_id: str, seed: int | None, repo: str | None, files: str | None, fetch_files, lookup,
               local: str | None = None) -> dict:
    """`lookup()`: the loader's own cache lookup, returning the path or raising MissingWeightsError."""
    from pathlib import Path

    from storyreel.core.errors import MissingWeightsError
    from storyreel.core.hub import fetch_command

    found = {"id": model_id, "seed": None if repo else seed, "repo": repo, "files": files if repo else None,
             "fetch": None}
    if local is not None:
        there = Path(local).exists()
        return {**found, "present": there, "path": local if there else None, "where": f"local {local}"}
    if repo is None and seed is not None:
        return {**found, "present": True, "path": None, "where": f"built in code (seed {seed})"}
    if repo is None:  # a MiDaS release without a Hugging Face mirror
        return {**found, "present": False, "path": None, "where": "no Hugging Face mirror: pass --weights FILE"}
    try:
        path = str(lookup())
    except MissingWeightsError as err:
        path, found["fetch"] = None, _command_in(str(err)) or fetch_command(repo, fetch_files)
    return {**found, "present": path is not None, "path": path, "where": f"HF cache {repo}: {files}"}


def _command_in(message: str) -> str | None:
    """The `hf download ...` command a MissingWeightsError names (only the files still missing)."""
    start = message.find("`hf download ")
    return message[start + 1:message.index("`", start + 1)] if start >= 0 else None


def _run_doctor(args) -> int:
    import platform
    import shutil

    from storyreel.core.hub import hf_cache_dir
    from storyreel.core.models import list_presets, resolve_preset

    checks = []  # (name, ok, detail, fix)

    try:
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            props = torch.cuda.get_device_properties(0)
            gpu = (f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} GPU(s), {props.name} "
                   f"{props.total_memory / 2**30:.0f} GiB; bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
        else:
            gpu = (f"no CUDA device (torch built for CUDA {torch.version.cuda or 'none'}): models run on the CPU, "
                   "in fp32 (slow for generation and training)")
        checks.append(("torch", True, f"torch {torch.__version__}, Python {platform.python_version()}", None))
        checks.append(("cuda", cuda, gpu, None if cuda else "a CUDA GPU and a CUDA build of torch (pytorch.org)"))
    except ImportError as err:
        checks.append(("torch", False, f"cannot import torch ({err})", "pip install torch"))

    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        checks.append(("ffmpeg", True, f"{ffmpeg} (writes mp4)", None))
    except (ImportError, RuntimeError) as err:
        system = shutil.which("ffmpeg")
        checks.append(("ffmpeg", system is not None, system or f"no ffmpeg ({err})", "pip install imageio-ffmpeg"))

    from pathlib import Path

    cache = Path(hf_cache_dir())
    writable = cache.is_dir() and os_access(cache)
    checks.append(("hf_cache", cache.is_dir(), f"{cache}" + ("" if cache.is_dir() else " does not exist")
                   + (" (read-only)" if cache.is_dir() and not writable else ""),
                   None if cache.is_dir() else "fetch weights with `hf download` (or set HF_HOME to your cache)"))

    selected = resolve_preset(None)
    presets = {}
    for name, preset in list_presets().items():
        components = describe(preset)
        missing = {role: c for role, c in components.items() if not c["present"]}
        presets[name] = {"ok": not missing, "components": components}
        checks.append((f"preset {name}", not missing,
                       "all weights present" if not missing else f"missing {', '.join(missing)}",
                       "; ".join(c["fetch"] or c["where"] for c in missing.values()) or None))

    ok = all(ok for name, ok, _, _ in checks if name in ("torch", "ffmpeg", f"preset {selected}"))
    if args.json:
        _print_json({"ok": ok, "selected": selected,
                     "checks": [{"name": n, "ok": o, "detail": d, "fix": f} for n, o, d, f in checks],
                     "presets": presets})
        return 0 if ok else 1
    for name, passed, detail, _ in checks:
        print(f"{'ok  ' if passed else 'MISS'}  {name:<15} {detail}")
        if name.startswith("preset ") and not passed:
            _print_components({r: c for r, c in presets[name[len('preset '):]]["components"].items()
                               if not c["present"]})
    verdict = "ready" if ok else "not ready"
    print(f"{verdict}: preset {selected} ($STORYREEL_MODELS, else default)"
          + ("" if ok else "; fetch the missing files above, or use --models toy"))
    return 0 if ok else 1


def os_access(path) -> bool:
    import os

    return os.access(path, os.W_OK)
