"""Render a story file into a story video: for each plot retrieve → depth → generate, then assemble.

    manifest = render_story("story.yaml", "my_index", "out", RenderOptions(preset="tiny"))

Outputs in OUT_DIR:
    plots/NN.mp4      one generated clip per plot (+ NN.mp4.json sidecar, NN.png storyboard row)
    story.mp4         the plots concatenated (same fps and size throughout)
    storyboard.png    one row per plot: source keyframes | depth | generated keyframes, with the text
    story.otio        OpenTimelineIO timeline: a track of the plots, one of their source clips (otio.py)
    manifest.json     story hash, the plan's consistency groups, resolved settings (entities with their
                      keyframe boxes, background, layout strength, tau), clip ids and scores, component
                      ids, seeds, timings, eval metrics and the layout as generated (per-frame boxes,
                      token positions, controlled steps) per plot

This module only orchestrates; the steps live beside it: folder.py (claiming and locking OUT_DIR),
clips.py (the source clip per plot), plots.py (generating one plot), storyboard.py (the pictures),
manifest.py (the manifest and the plot keys).

Resumable and reproducible: a plot's *key* hashes everything its frames depend on (resolved plot
settings incl. pack contents, the retrieved clip and its video fingerprint, the model ids). A rerun
regenerates only plots whose key changed; every file is written atomically and the manifest after
each plot, so an interrupted render keeps what it finished.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.progress import Progress
from storyreel.core.recipes import get_recipe
from storyreel.story.clips import choose_clips, clip_exists
from storyreel.story.folder import claim_output_folder, render_lock
from storyreel.story.format import Story, load_story, plot_settings, resolved_plot_settings, validate_pins
from storyreel.story.manifest import (
    MANIFEST_FILE,
    Manifest,
    merged_records,
    model_ids,
    plot_key,
    read_manifest,
    summary_table,
)
from storyreel.story.plots import PlotGenerator, ResolvedPlot
from storyreel.story.storyboard import assemble_storyboard, row_png

if TYPE_CHECKING:
    import torch

    from storyreel.core.models import ModelPreset
    from storyreel.index.embed import ClipEmbedder


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """How to render, beside the story file itself.

    `preset`: the models (--models), else the story's `models: preset`, else the preset the index was
    built with, else $STORYREEL_MODELS / default; `overrides` (with_overrides keywords, e.g. from --base)
    win over the story's `models:` section. CLIP is the index's own unless a clip is swapped in.
    `backend`: for plots whose story file names none (a plot's or the story's `backend:` wins).
    `recipe`: the paper recipe (core/recipes/) for a story file that names none.
    `device`/`dtype`/`cpu_offload`: as ClipGenerator takes them.
    `force`: render into any folder, and replace a manifest.json that is not a render's (folder.py).
    """

    preset: str | ModelPreset | None = None
    backend: str | None = None
    recipe: str | None = None
    overrides: dict | None = None
    device: str | torch.device | None = None
    dtype: torch.dtype | None = None
    cpu_offload: bool = False
    force: bool = False


@dataclasses.dataclass(frozen=True)
class _Session:
    """What every step of one render shares: the story, the open index, the models."""

    story: Story
    index: object
    out_dir: Path
    options: RenderOptions
    preset: ModelPreset    # swaps applied
    embedder: ClipEmbedder  # the index's CLIP (or the one swapped in), for retrieval and eval
    models: dict           # their ids (manifest.py `model_ids`)


def render_story(story_path, index_dir, out_dir, options: RenderOptions | None = None, *,
                 progress: Progress | None = None, log=None) -> Manifest:
    """Render `story_path` with clips from `index_dir` into `out_dir`; returns the manifest.

    `progress`: a `Progress` (core/progress.py) told each plot's stage and, in a child bar, its
    denoising steps; None reports nothing. `log`: a stream for the summary table and notes (None: logging).
    `out_dir` must be new, empty or an earlier render's (`options.force`: any folder; see
    `claim_output_folder`).
    """
    options = options or RenderOptions()
    story = load_story(story_path)
    if options.backend and story.backend is None:
        story = dataclasses.replace(story, backend=options.backend)
    if options.recipe and story.recipe is None:
        story = dataclasses.replace(story, recipe=get_recipe(options.recipe).name)
    # Packs, tokens and every plot's numbers, before the output folder is touched or any model loads (the
    # preset the index decides is known only inside; the settings are checked again with it there).
    check_story(story, options.preset or story.models.get("preset"))
    out_dir = Path(out_dir)
    claim_output_folder(out_dir, force=options.force)
    with render_lock(out_dir):
        return _render_locked(story, index_dir, out_dir, options, progress or Progress("render", quiet=True), log)


def _render_locked(story: Story, index_dir, out_dir: Path, options: RenderOptions, progress: Progress,
                   log) -> Manifest:
    from storyreel import index as index_package
    from storyreel.story.otio import write_story_otio

    earlier = read_manifest(out_dir / MANIFEST_FILE, force=options.force)
    (out_dir / "plots").mkdir(exist_ok=True)
    with index_package.open_index(index_dir) as index:
        # 1. Check the story against the index and load CLIP, before any other model loads.
        session = _open_session(story, index, out_dir, options)
        # 2. Retrieve a source clip for every plot (cheap; decides which plots changed).
        plots = _resolve_plots(session)
        # 3. Per plot: keep the earlier result, or depth → generate → write.
        manifest = _render_plots(session, plots, earlier, progress, log)
        # 4. Assemble the story video, the storyboard and the timeline from the plot files.
        progress.update(force=True, stage="assembling story.mp4 and storyboard.png")
        assemble_story([out_dir / p.output for p in manifest.plots], out_dir / "story.mp4",
                       fps=manifest.plots[0].settings["fps"])
        assemble_storyboard([row_png(out_dir / p.output) for p in manifest.plots], out_dir / "storyboard.png")
        write_story_otio(manifest, out_dir)
    progress.close()
    if log is not None:  # the CLI prints it itself (unless --quiet)
        print(summary_table(manifest.plots), file=log)
    return manifest


def _component_swaps(story: Story, overrides: dict | None) -> dict:
    """The components swapped in: the story's `models:` section, then `overrides` (with_overrides keywords)."""
    from storyreel.core.models import COMPONENTS

    swaps = {c.name: story.models[c.story_key] for c in COMPONENTS if c.story_key in story.models}
    swaps.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return swaps


def _open_session(story: Story, index, out_dir: Path, options: RenderOptions) -> _Session:
    from storyreel.core.models import get_preset, preset_for_model_id, with_overrides
    from storyreel.index.embed import clip_for_index

    swaps = _component_swaps(story, options.overrides)
    validate_pins(story, lambda clip_id: clip_exists(index, clip_id))
    preset = options.preset or story.models.get("preset") or preset_for_model_id(index.model_id)
    preset = with_overrides(get_preset(preset), **swaps)
    check_plot_settings(story, preset)
    embedder = clip_for_index(index.model_id, clip=swaps.get("clip"), device=options.device, dtype=options.dtype)
    return _Session(story, index, out_dir, options, preset, embedder, model_ids(preset, embedder.model_id))


def _resolve_plots(session: _Session) -> list[ResolvedPlot]:
    story, preset = session.story, session.preset
    choices = choose_clips(story, session.index, session.embedder, preset)
    return [ResolvedPlot(i, resolved_plot_settings(story, i, preset), choice,
                         plot_key(story, i, choice.clip, session.models, preset))
            for i, choice in enumerate(choices)]


def _render_plots(session: _Session, plots: list[ResolvedPlot], earlier: Manifest | None, progress: Progress,
                  log) -> Manifest:
    """Every plot's record, kept or rendered, in plot order; manifest.json is rewritten after each plot."""
    steps = progress.child("steps")
    earlier_records = {p.index: p for p in earlier.plots} if earlier else {}
    keys = [plot.key for plot in plots]
    generator, records = None, []
    for plot in plots:
        done = earlier_records.get(plot.index)
        if done and done.key == plot.key and _files_there(session.out_dir / plot.output):
            progress.update(force=True, plot=plot.index + 1, of=len(plots), stage="unchanged, kept")
            records.append(dataclasses.replace(done, reused=True))
        else:
            if generator is None:
                progress.update(force=True, stage="loading models")
                options = session.options
                generator = PlotGenerator(session.story, session.preset, session.embedder, plot.settings["backend"],
                                          log=log, device=options.device, dtype=options.dtype,
                                          cpu_offload=options.cpu_offload)
            records.append(generator.render_plot(
                plot, session.index, session.out_dir,
                lambda stage, n=plot.index + 1: progress.update(force=True, plot=n, of=len(plots), stage=stage),
                on_step=lambda step, total: steps.update(steps=step, of=total)))
        # Unchanged plots this run has not reached yet keep their earlier records: an interrupted rerun
        # forgets no finished plot, and the next run keeps them.
        manifest = Manifest.for_story(session.story, session.models, merged_records(records, earlier, keys))
        manifest.write(session.out_dir)
    steps.close()
    return manifest


def _files_there(video: Path) -> bool:
    """A kept plot's video and storyboard row are still in OUT_DIR."""
    return video.is_file() and row_png(video).is_file()


def assemble_story(plot_videos: list[Path], out: Path, *, fps: float) -> None:
    """Concatenate the plot videos into one mp4 (they share fps and size by construction)."""
    from storyreel.core.writers import write_video
    from storyreel.generation.evaluate import read_clip_frames

    frames = np.concatenate([read_clip_frames(p) for p in plot_videos])
    write_video(frames, out, fps=fps, metadata={"kind": "story", "plots": [p.name for p in plot_videos]})


def check_story(story: Story, preset=None) -> None:
    """One-line UserErrors, before any model loads: every character's token valid and equal to its pack's
    token, every pack intact, every plot's settings in range (with `preset`'s defaults; None: the default)."""
    from storyreel.generation.characters.pack import load_pack
    from storyreel.generation.characters.tokens import check_token

    where = story.source or "story"
    for token, character in story.characters.items():
        check_token(token, f"{where}: characters:")
        pack = load_pack(character.pack)
        if pack.token != token:
            raise UserError(f"{where}: characters.{token}: pack {character.pack} is for token {pack.token!r}; "
                            f"write the character as {pack.token!r} or train a pack with --token '{token}'")
    check_plot_settings(story, preset)


def check_plot_settings(story: Story, preset=None) -> None:
    """Every plot's GenerationSettings in range (generation/settings.py `check`), naming the plot."""
    for i in range(len(story.plots)):
        try:
            plot_settings(story, i, preset).check()
        except UserError as err:
            raise UserError(f"{story.source or 'story'}: plots[{i}]: {err}") from None

