"""`manifest.json`: what a render made, per plot, and what it was made from (render.py writes it).

    manifest = read_manifest(out_dir / MANIFEST_FILE)   # None when the folder has none yet
    manifest.write(out_dir)                              # atomically, after each plot

A plot's *key* hashes everything its frames depend on (`plot_key`); a rerun keeps a plot whose key is
unchanged. The JSON layout (see `Manifest.to_dict`) is what story.otio, the web app and users' scripts read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic
from storyreel.story.format import Story, plot_hash

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclasses.dataclass(frozen=True)
class PlotRecord:
    """One plot's manifest entry (JSON sub-objects stay dicts: they are written as they are)."""

    index: int
    output: str                    # the plot's video, relative to OUT_DIR: plots/NN.mp4
    settings: dict                 # resolved plot settings (story/format.py `resolved_plot_settings`)
    clip: dict                     # the source clip's index record plus its retrieval "score" (None: pinned)
    notes: list[str]               # retrieval fallbacks and generation notes
    structure_forward_passes: int
    timings: dict                  # seconds: depth_s, generate_s, write_eval_s
    metrics: dict                  # generation/evaluate.py scores and the CLIP model that gave them
    key: str                       # `plot_key` of what the frames were made from
    reused: bool                   # kept from an earlier render rather than rendered by this one
    layout: dict | None = None     # the layout as generated, for plots with entities

    def to_dict(self) -> dict:
        entry = {"index": self.index, "output": self.output, "settings": self.settings, "clip": self.clip,
                 "notes": self.notes, "structure_forward_passes": self.structure_forward_passes,
                 "timings": self.timings}
        if self.layout is not None:
            entry["layout"] = self.layout
        return {**entry, "metrics": self.metrics, "key": self.key, "reused": self.reused}

    @classmethod
    def from_dict(cls, entry: dict) -> PlotRecord:
        return cls(**{f.name: entry[f.name] for f in dataclasses.fields(cls) if f.name != "layout"},
                   layout=entry.get("layout"))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A render's manifest: the story it rendered, the model ids, and a record per finished plot."""

    title: str | None
    story_file: str
    story_sha256: str
    models: dict                   # model ids every plot depends on (`model_ids`), "preset" included
    consistency: dict              # the plan's consistency groups (story/format.py)
    plots: list[PlotRecord]        # in plot order

    @classmethod
    def for_story(cls, story: Story, models: dict, plots: list[PlotRecord]) -> Manifest:
        return cls(title=story.title, story_file=str(story.source),
                   story_sha256=hashlib.sha256(Path(story.source).read_bytes()).hexdigest(), models=models,
                   consistency=story.consistency, plots=plots)

    @property
    def frames(self) -> int:
        """Frames of story.mp4: every plot's."""
        return sum(p.settings["frames"] for p in self.plots)

    def to_dict(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "title": self.title,
            "story_file": self.story_file,
            "story_sha256": self.story_sha256,
            "preset": self.models["preset"],
            "models": self.models,
            "plan": {"consistency": self.consistency},
            "plots": {str(p.index): p.to_dict() for p in self.plots},
            "story": {"output": "story.mp4", "storyboard": "storyboard.png", "frames": self.frames},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        """The manifest `data` holds; ValueError, TypeError, KeyError or AttributeError when it is not one."""
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}")
        plots = {int(key): PlotRecord.from_dict(entry) for key, entry in data["plots"].items()}
        if any(plot.index != key for key, plot in plots.items()):
            raise ValueError("a plot entry's index differs from its key")
        return cls(title=data["title"], story_file=data["story_file"], story_sha256=data["story_sha256"],
                   models=data["models"], consistency=data["plan"]["consistency"],
                   plots=[plots[key] for key in sorted(plots)])

    def write(self, out_dir: Path) -> None:
        write_text_atomic(Path(out_dir) / MANIFEST_FILE, json.dumps(self.to_dict(), indent=2) + "\n")


def read_manifest(path: Path, force: bool = False) -> Manifest | None:
    """The earlier render's manifest (None if there is none). A file that is not one is refused, not
    overwritten (`force`: ignored, so it is replaced)."""
    if not path.exists():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        if force:
            return None
        raise UserError(f"--out {path} is not a storyreel render manifest; move it away, choose another --out, "
                        "or pass --force to replace it") from None


def model_ids(preset, clip_model_id: str) -> dict:
    """Ids of every model a plot's frames depend on, known without loading the models."""
    from storyreel.core.models import as_defined, get_preset

    models = get_preset(preset)
    generator = models.generator
    ids = {"preset": models.name, "base": generator.base, "motion_adapter": generator.motion_adapter,
           "controlnet": generator.controlnet, "depth": models.depth, "clip": clip_model_id}
    if generator.scheduler != as_defined(models).generator.scheduler:  # swapped (--scheduler)
        ids["scheduler"] = generator.scheduler.name
    return ids


def plot_key(story: Story, i: int, clip, models: dict, preset) -> str:
    """The hash of everything plot `i`'s frames depend on: its resolved settings (pack contents
    included), the source `clip` and its video's fingerprint, the model ids."""
    parts = {"plot": plot_hash(story, i, preset), "clip": clip.clip_id, "video": clip.video_fingerprint,
             "models": models, "version": MANIFEST_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def merged_records(records: list[PlotRecord], earlier: Manifest | None, keys: list[str]) -> list[PlotRecord]:
    """`records` (this run's), then `earlier`'s records of the other plots whose key is unchanged
    (`keys[index]`, so a rerun keeps them); records of changed plots are dropped. In plot order."""
    done = {r.index for r in records}
    kept = [r for r in (earlier.plots if earlier else []) if r.index < len(keys) and r.index not in done
            and r.key == keys[r.index]]
    return sorted(records + kept, key=lambda r: r.index)


def summary_table(plots: list[PlotRecord]) -> str:
    """One line per plot: clip, score, frames, tau, kept or rendered, CLIP-T and text."""
    lines = [f"{'plot':>4}  {'clip':>5}  {'score':>7}  {'frames':>6}  {'tau':>4}  {'status':<9}  {'CLIP-T':>6}  text"]
    for p in plots:
        s = p.settings
        score = "pinned" if p.clip["score"] is None else f"{p.clip['score']:.3f}"
        lines.append(f"{p.index:>4}  {p.clip['clip_id']:>5}  {score:>7}  {s['frames']:>6}  {s['tau']:>4}  "
                     f"{'kept' if p.reused else 'rendered':<9}  {p.metrics['clip_t']:>6.3f}  {s['text'][:50]}")
    return "\n".join(lines)
