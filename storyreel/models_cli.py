"""`storyreel models`: every preset of the registry (storyreel.core.models), its components and where
each is looked for, with whether it is there (see storyreel/cli.py and docs/CLI.md).

    storyreel models [--json]

Presence is checked with the loaders' own lookups (the Hugging Face cache only, never the network),
so "present" means the load would find its files. It reports on every package's models, so it sits
beside the dispatcher, above the packages (storyreel.core stays below them all).
"""

from __future__ import annotations

import json
import sys

from storyreel.core.cli import add_command


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    add_command(commands, "models", _run_models,
                "list model presets, their components and where their weights are looked for", models=None,
                description="List every model preset (--models / $STORYREEL_MODELS), its CLIP, depth model "
                            "and generator, and where each component's weights are looked for in the Hugging "
                            "Face cache.")


def _run_models(args) -> int:
    from dataclasses import asdict

    from storyreel.core.hub import hf_cache_dir
    from storyreel.core.models import PRESETS, resolve_preset

    selected = resolve_preset(None)  # what --models left out would pick ($STORYREEL_MODELS, else default)
    defaults = ("height", "width", "frames", "steps", "cfg", "train_size")
    report = {"selected": selected, "hf_cache": hf_cache_dir(), "presets": {
        name: {"components": describe(preset), "scheduler": asdict(preset.generator.scheduler),
               "defaults": {k: getattr(preset.generator, k) for k in defaults}}
        for name, preset in PRESETS.items()}}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for name, preset in report["presets"].items():
        print(f"{name}{'  (selected)' if name == selected else ''}")
        for role, c in preset["components"].items():
            status = "" if c["repo"] is None else "present  " if c["present"] else "missing  "
            print(f"  {role:<15} {c['id']:<45} {status}{c['where']}")
        scheduler = preset["scheduler"]
        overrides = " ".join(f"{k}={v}" for k, v in scheduler["config"].items())
        print(f"  {'scheduler':<15} {scheduler['name']} {overrides}")
        d = preset["defaults"]
        print(f"  {'defaults':<15} {d['width']}x{d['height']}, {d['frames']} frames, {d['steps']} steps, "
              f"cfg {d['cfg']}, character training {d['train_size']}px")
    print(f"Hugging Face cache: {report['hf_cache']}")
    return 0


def describe(preset) -> dict[str, dict]:
    """Per component: its id, where it is looked for (`repo` and `files`; none: built in code), whether it is there."""
    from storyreel.core.hub import hf_file, hf_folder
    from storyreel.core.models import HF_HUB, OPEN_CLIP_WEIGHTS
    from storyreel.depth.registry import get_config
    from storyreel.index.embed import OPEN_CLIP_CONFIG, find_checkpoint

    clip, depth, generator = preset.clip, get_config(preset.depth), preset.generator
    # CLIP checkpoints are alternatives (first found wins, in open_clip's order).
    clip_files = " or ".join(OPEN_CLIP_WEIGHTS)
    if clip.architecture.startswith(HF_HUB):
        clip_files = f"{OPEN_CLIP_CONFIG} and {clip_files}"

    def clip_lookup():
        if clip.architecture.startswith(HF_HUB):
            hf_file(clip.weights_repo, OPEN_CLIP_CONFIG, "CLIP")
        return find_checkpoint(clip)

    components = {"clip": _component(clip.model_id, clip.seed, clip.weights_repo, clip_files, clip_lookup)}
    repo, filename = depth.hf_weights or (None, None)
    components["depth"] = _component(depth.name, depth.random_init_seed, repo, filename,
                                     lambda: hf_file(repo, filename, "depth"))
    for role in ("base", "motion_adapter", "controlnet"):
        repo = getattr(generator, role)
        components[role] = _component(repo, generator.seed, None if generator.seed is not None else repo,
                                      "the whole repo", lambda repo=repo, role=role: hf_folder(repo, role))
    return components


def _component(model_id: str, seed: int | None, repo: str | None, files: str | None, lookup) -> dict:
    """`lookup()`: the loader's own cache lookup, returning the path or raising MissingWeightsError."""
    from storyreel.core.errors import MissingWeightsError

    found = {"id": model_id, "seed": None if repo else seed, "repo": repo, "files": files if repo else None}
    if repo is None and seed is not None:
        return {**found, "present": True, "path": None, "where": f"built in code (seed {seed})"}
    if repo is None:  # a MiDaS release without a Hugging Face mirror
        return {**found, "present": False, "path": None, "where": "no Hugging Face mirror: pass --weights FILE"}
    try:
        path = str(lookup())
    except MissingWeightsError:
        path = None
    return {**found, "present": path is not None, "path": path, "where": f"HF cache {repo}: {files}"}
