"""Render a story file into a story video: for each plot retrieve → depth → generate, then assemble.

    manifest = render_story("story.yaml", "my_index", "out", preset="tiny")

Outputs in OUT_DIR:
    plots/NN.mp4      one generated clip per plot (+ NN.mp4.json sidecar, NN.png storyboard row)
    story.mp4         the plots concatenated (same fps and size throughout)
    storyboard.png    one row per plot: source keyframes | depth | generated keyframes, with the text
    story.otio        OpenTimelineIO timeline: a track of the plots, one of their source clips (otio.py)
    manifest.json     story hash, the plan's consistency groups, resolved settings (entities with their
                      keyframe boxes, background, layout strength, tau), clip ids and scores, component
                      ids, seeds, timings, eval metrics and the layout as generated (per-frame boxes,
                      token positions, controlled steps) per plot

Resumable and reproducible: a plot's *key* hashes everything its frames depend on (resolved plot
settings incl. pack contents, the retrieved clip and its video fingerprint, the model ids). A rerun
regenerates only plots whose key changed; every file is written atomically and the manifest after
each plot, so an interrupted render keeps what it finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import write_text_atomic
from storyreel.core.progress import Progress
from storyreel.core.sheet import BOX_COLOURS
from storyreel.core.video import spread_indices
from storyreel.story.format import (
    Story,
    layout_of,
    load_story,
    plot_hash,
    plot_settings,
    resolved_plot_settings,
    validate_pins,
)

MANIFEST_VERSION = 1
KEYFRAMES = 3          # keyframes per storyboard panel
PANEL_HEIGHT = 96      # storyboard row height in pixels
LAYOUT_TILE_HEIGHT = 160  # keyframe height in a plot's layout picture (paint_layouts), pixels
LAYOUT_GAP = 8         # white space around and between a layout picture's keyframes, pixels
RETRIEVAL_POOL = 50    # candidates fetched per plot, so already-used clips can be skipped

logger = logging.getLogger(__name__)


def render_story(story_path, index_dir, out_dir, *, preset=None, backend: str | None = None,
                 progress: Progress | None = None, log=None, overrides: dict | None = None, device=None,
                 dtype=None, cpu_offload: bool = False, force: bool = False) -> dict:
    """Render `story_path` with clips from `index_dir` into `out_dir`; returns the manifest.

    `backend`: for plots whose story file names none (a plot's or the story's `backend:` wins).
    Models: `preset` (--models), else the story's `models: preset`, else the preset the index was built
    with, else $STORYREEL_MODELS / default; `overrides` (with_overrides keywords, e.g. from --base) win
    over the story's `models:` section. CLIP is the index's own unless a clip is swapped in.
    `device`/`dtype`/`cpu_offload`: as ClipGenerator takes them.
    `progress`: a `Progress` (core/progress.py) told each plot's stage and, in a child bar, its
    denoising steps; None reports nothing. `log`: a stream for the summary table and notes (None: logging).
    `out_dir` must be new, empty or an earlier render's (`force`: any folder; see `claim_output_folder`).
    """
    story = load_story(story_path)
    if backend and story.backend is None:
        story = dataclasses.replace(story, backend=backend)
    # Packs, tokens and every plot's numbers, before the output folder is touched or any model loads (the
    # preset the index decides is known only inside; the settings are checked again with it there).
    check_story(story, preset or story.models.get("preset"))
    out_dir = Path(out_dir)
    claim_output_folder(out_dir, force=force)
    with render_lock(out_dir):
        return _render_locked(story, index_dir, out_dir, preset, progress, log, overrides, device, dtype,
                              cpu_offload, force)


def _render_locked(story: Story, index_dir, out_dir: Path, preset, progress, log, overrides, device, dtype,
                   cpu_offload: bool, force: bool) -> dict:
    from storyreel import index as index_package
    from storyreel.core.models import COMPONENTS, get_preset, preset_for_model_id, with_overrides
    from storyreel.index.embed import clip_for_index
    from storyreel.story.otio import write_story_otio

    progress = progress or Progress("render", quiet=True)
    steps = progress.child("steps")
    previous = _read_manifest(out_dir / "manifest.json", force=force)
    (out_dir / "plots").mkdir(exist_ok=True)
    swaps = {c.name: story.models[c.story_key] for c in COMPONENTS if c.story_key in story.models}
    swaps.update({key: value for key, value in (overrides or {}).items() if value is not None})

    with index_package.open_index(index_dir) as index:
        # 1. Check the story against the index before any model loads.
        validate_pins(story, lambda clip_id: _clip_exists(index, clip_id))
        preset = preset or story.models.get("preset") or preset_for_model_id(index.model_id)
        preset = with_overrides(get_preset(preset), **swaps)
        check_plot_settings(story, preset)
        embedder = clip_for_index(index.model_id, clip=swaps.get("clip"), device=device, dtype=dtype)
        models = _model_ids(preset, embedder.model_id)

        # 2. Retrieve a source clip for every plot (cheap; decides which plots changed).
        picks = choose_clips(story, index, embedder, preset)

        # 3. Per plot: reuse the previous result, or depth → generate → write.
        generator = None
        plots = []
        keys = [_plot_key(story, i, pick["clip"], models, preset) for i, pick in enumerate(picks)]
        for i, pick in enumerate(picks):
            settings = resolved_plot_settings(story, i, preset)
            key = keys[i]
            video = out_dir / "plots" / f"{i:02d}.mp4"
            done = previous.get("plots", {}).get(str(i))
            if done and done.get("key") == key and video.is_file() and _row_png(video).is_file():
                progress.update(force=True, plot=i + 1, of=len(picks), stage="unchanged, kept")
                plots.append({**done, "reused": True})
            else:
                if generator is None:
                    progress.update(force=True, stage="loading models")
                    generator = PlotGenerator(story, preset, embedder, settings["backend"], log=log,
                                              device=device, dtype=dtype, cpu_offload=cpu_offload)
                entry = generator.render_plot(
                    i, settings, pick, index, video,
                    lambda stage, n=i + 1: progress.update(force=True, plot=n, of=len(picks), stage=stage),
                    on_step=lambda done, total: steps.update(steps=done, of=total))
                plots.append({**entry, "key": key, "reused": False})
            # Unchanged plots this run has not reached yet keep their earlier entries: an interrupted rerun
            # forgets no finished plot, and the next run keeps them.
            manifest = _manifest(story, preset, models, _merged_plots(previous, plots, keys))
            write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")

        # 4. Assemble the story video and the storyboard from the plot files.
        steps.close()
        progress.update(force=True, stage="assembling story.mp4 and storyboard.png")
        assemble_story([out_dir / p["output"] for p in plots], out_dir / "story.mp4", fps=plots[0]["settings"]["fps"])
        assemble_storyboard([_row_png(out_dir / p["output"]) for p in plots], out_dir / "storyboard.png")
        write_story_otio(manifest, out_dir)
    progress.close()
    if log is not None:  # the CLI prints it itself (unless --quiet)
        print(summary_table(plots), file=log)
    return manifest


# -- checks and the output folder --------------------------------------------------------------------

MARKER = ".storyreel-render"  # in OUT_DIR: this folder is a storyreel render (written before anything else)
LOCK = ".storyreel-render.lock"  # flock'ed while a render writes to OUT_DIR


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


def claim_output_folder(out_dir: Path, *, force: bool = False) -> None:
    """Make `out_dir` a render folder: new, empty, or already one (its marker file, or an earlier
    storyreel manifest). Any other folder is refused unless `force`, so no unrelated file is overwritten."""
    from storyreel.core.files import check_output_path, write_text_atomic

    check_output_path(out_dir, "--out", folder=True, create_parents=True)
    if out_dir.is_dir() and not (out_dir / MARKER).is_file():
        others = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
        if others and not force and not _is_earlier_render(out_dir):
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise UserError(f"--out {out_dir} is a folder with other files in it ({shown}) and not a storyreel "
                            "render; choose a new or empty folder, or pass --force to render into it")
    for name in ("plots",):
        if (out_dir / name).exists() and not (out_dir / name).is_dir():
            raise UserError(f"--out {out_dir}: {out_dir / name} is a file; move it away or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / MARKER).is_file():
            write_text_atomic(out_dir / MARKER, json.dumps({"kind": "storyreel-render", "version": MANIFEST_VERSION})
                              + "\n")
    except OSError as err:
        raise UserError(f"--out {out_dir}: cannot write there ({err.strerror or err})") from None


def _is_earlier_render(out_dir: Path) -> bool:
    """A render folder written before renders left a marker: its manifest is a storyreel one."""
    try:
        return bool(_read_manifest(out_dir / "manifest.json")) and (out_dir / "plots").is_dir()
    except UserError:
        return False


@contextlib.contextmanager
def render_lock(out_dir: Path):
    """Hold OUT_DIR's lock while rendering: a second render into the same folder stops with one line.

    An flock dies with its process, so a killed render never leaves a stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: render without the lock
        yield
        return
    fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise UserError(f"--out {out_dir}: another storyreel render is writing there"
                            f"{f' (process {holder})' if holder else ''}; wait for it to finish or choose "
                            "another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- retrieval ---------------------------------------------------------------------------------------


def choose_clips(story: Story, index, embedder, preset=None) -> list[dict]:
    """One source clip per plot: pinned, or the best unused clip that is long enough (motion preferred).

    Falls back step by step (any motion, any length, a reused clip) and says so in the pick's notes.
    Plots of one background group (story.consistency["backgrounds"]) prefer clips of the source video
    the group's first plot got, when it has fitting unused clips (retrieval/groups.py).
    """
    from storyreel.retrieval import prefer_video, search

    used: set[int] = set()
    picks = []
    group_of = {j: name for name, members in story.consistency.get("backgrounds", {}).items() for j in members}
    group_video: dict[str, str] = {}
    for i, plot in enumerate(story.plots):
        settings = resolved_plot_settings(story, i, preset)
        if plot.clip is not None:
            clip = index.clip(plot.clip)
            picks.append({"clip": clip, "score": None, "notes": [f"clip {plot.clip} pinned by the story"]})
            used.add(clip.clip_id)
            if i in group_of:
                group_video.setdefault(group_of[i], clip.video)
            continue
        seconds = settings["frames"] / settings["fps"]
        attempts = [(settings["motion"], seconds, None), (None, seconds, "no unused clip with motion "
                                                                          f"{settings['motion']!r}; any motion"),
                    (None, None, f"no unused clip of at least {seconds:g} s; any length")]
        if settings["motion"] is None:
            attempts = attempts[1:]
        notes, chosen = [], None
        for attempt, (motion, min_seconds, fallback_note) in enumerate(attempts):
            if attempt > 0:  # the attempt before found nothing: say which fallback follows
                notes.append(fallback_note)
            hits = search(index, text=settings["query"], k=RETRIEVAL_POOL, motion=motion, min_seconds=min_seconds,
                          embedder=embedder)
            unused = prefer_video([h for h in hits if h.clip.clip_id not in used], group_video.get(group_of.get(i)))
            if unused:
                chosen = unused[0]
                break
        if chosen is None:  # every fitting clip is taken: reuse the best one, and say so
            hits = search(index, text=settings["query"], k=1, embedder=embedder)
            if not hits:
                raise UserError(f"index {index.path} has no clips to render plot {i} from; "
                                f"add videos with `storyreel index build VIDEO_DIR --index {index.path}`")
            chosen = hits[0]
            notes.append(f"clip {chosen.clip.clip_id} reused: no unused clip fits plot {i}")
        used.add(chosen.clip.clip_id)
        if i in group_of:
            if group_of[i] in group_video and chosen.clip.video == group_video[group_of[i]]:
                notes.append(f"background group {group_of[i]!r}: same source video as its first plot")
            group_video.setdefault(group_of[i], chosen.clip.video)
        picks.append({"clip": chosen.clip, "score": round(float(chosen.score), 6), "notes": notes})
    return picks


def _clip_exists(index, clip_id: int) -> bool:
    try:
        index.clip(clip_id)
        return True
    except UserError:
        return False


# -- generation --------------------------------------------------------------------------------------


class PlotGenerator:
    """The models a render needs, loaded once: the clip generator (with every character pack), CLIP for eval."""

    def __init__(self, story: Story, preset, embedder, backend: str, log=None, device=None, dtype=None,
                 cpu_offload: bool = False):
        from storyreel.generation.characters.pack import load_pack
        from storyreel.generation.generate import ClipGenerator

        self.story, self.preset, self.embedder, self.log = story, preset, embedder, log
        # `backend` (the first plot to render's) loads now; another one a later plot asks for, on first use.
        self.clips = ClipGenerator(preset, characters=[c.pack for c in story.characters.values()], backend=backend,
                                   device=device, dtype=dtype, cpu_offload=cpu_offload)
        self.packs = {token: load_pack(c.pack) for token, c in story.characters.items()}
        self.colours = entity_colours(story)

    def render_plot(self, i: int, settings: dict, pick: dict, index, video: Path, stage, on_step=None) -> dict:
        from storyreel.generation.evaluate import score_clip

        clip = pick["clip"]
        present = [c["token"] for c in settings["characters"]]  # only their LoRA stays on in this plot
        layout = layout_of(settings)
        generated = self.clips.generate(
            settings["prompt"], clip.clip_id, video, plot_settings(self.story, i, self.preset),
            negative_prompt=settings["negative_prompt"], index_dir=index, present=present, on_stage=stage,
            on_step=on_step, layout=layout)
        start = time.perf_counter()
        source_frames = index.read_frames(clip.clip_id, _keyframe_indices(clip.end_frame - clip.start_frame))
        depth_frames = generated.depth[_keyframe_indices(len(generated.depth))].permute(0, 2, 3, 1).cpu().numpy()
        keyframes = _keyframe_indices(len(generated.frames))
        boxes = {} if layout is None else {e.name: b for e, b in zip(layout.entities,
                                                                      layout.frame_boxes(len(generated.frames)))}
        write_storyboard_row(_row_png(video), f"{i:02d}  {settings['text']}", source_frames,
                             (depth_frames * 255).round().astype(np.uint8), generated.frames[keyframes],
                             [[(b[f], name, self.colours[name]) for name, b in boxes.items()] for f in keyframes])
        metrics = score_clip(generated.frames, settings["prompt"], self.embedder, [self.packs[t] for t in present])
        timings = {"depth_s": generated.timings["depth_s"], "generate_s": generated.timings["generate_s"],
                   "write_eval_s": round(generated.timings["write_s"] + time.perf_counter() - start, 3)}
        notes = pick["notes"] + generated.sidecar["notes"]
        for note in notes:
            if self.log is not None:
                print(f"storyreel: note: plot {i}: {note}", file=self.log)
            else:
                logger.info("note: plot %d: %s", i, note)
        return {
            "index": i, "output": str(video.relative_to(video.parent.parent)), "settings": settings,
            "clip": {**clip.to_dict(), "score": pick["score"]}, "notes": notes,
            "structure_forward_passes": generated.sidecar["structure_forward_passes"], "timings": timings,
            **({"layout": {**generated.sidecar["layout"],
                           "frame_boxes": {name: np.round(b, 4).tolist() for name, b in boxes.items()}}}
               if layout is not None else {}),
            "metrics": {"clip_t": metrics.clip_t, "clip_i": metrics.clip_i,
                        "temporal_consistency": metrics.temporal_consistency,
                        "motion_magnitude": metrics.motion_magnitude, "clip_model": metrics.model_id},
        }


# -- assembly ----------------------------------------------------------------------------------------


def assemble_story(plot_videos: list[Path], out: Path, *, fps: float) -> None:
    """Concatenate the plot videos into one mp4 (they share fps and size by construction)."""
    from storyreel.core.writers import write_video
    from storyreel.generation.evaluate import read_clip_frames

    frames = np.concatenate([read_clip_frames(p) for p in plot_videos])
    write_video(frames, out, fps=fps, metadata={"kind": "story", "plots": [p.name for p in plot_videos]})


def write_storyboard_row(path: Path, text: str, source: np.ndarray, depth_frames: np.ndarray,
                         generated: np.ndarray, boxes=()) -> None:
    """One storyboard row: the plot text above source keyframes | depth | generated keyframes; `boxes`:
    per generated keyframe, the (box, entity name) pairs outlined on it."""
    from storyreel.core.sheet import SheetRow, paint_sheet

    paint_sheet(path, [SheetRow([source, depth_frames, generated], [text[:160]], boxes=[(), (), list(boxes)])],
                tile_height=PANEL_HEIGHT, gap=8, background="white", ink="black")


def entity_colours(story: Story) -> dict[str, str]:
    """One outline colour per entity name across the whole story, in order of first appearance (the
    storyboard's and the layout pictures' colours agree)."""
    names = dict.fromkeys(e.name for plot in story.plots for e in plot.entities or [])
    return {name: BOX_COLOURS[n % len(BOX_COLOURS)] for n, name in enumerate(names)}


def paint_layouts(story: Story, path, *, index=None, render_dir=None, preset=None) -> Path | None:
    """The plan's layout, rendered or not, as the PNG `path`: a row per plot with entities, its text above
    KEYFRAMES keyframes with the entity boxes outlined and labelled (the storyboard's painter and
    colours). Returns `path`, or None (nothing written) when no plot has entities. The UI's Story tab
    shows it.

    The keyframes are the plot's source clip's when `index` holds it: the pinned clip, else the clip the
    render in `render_dir` retrieved for the plot (its manifest). They are cover-cropped to the plot's
    size as depth conditioning crops them (depth/conditioning.py), since boxes are fractions of the
    generated frame. Without such a clip, neutral grey frames of the plot's size.
    """
    from PIL import Image, ImageOps

    from storyreel.core.sheet import SheetRow, paint_sheet
    from storyreel.generation.layout import interpolate_boxes

    colours = entity_colours(story)
    # A manifest that is not one just means no retrieved clips here (force: ignored, not refused).
    rendered = _read_manifest(Path(render_dir) / "manifest.json", force=True).get("plots", {}) if render_dir else {}
    rows = []
    for i, plot in enumerate(story.plots):
        if not plot.entities:
            continue
        settings = plot_settings(story, i, preset)
        size = (settings.width, settings.height)
        retrieved = rendered.get(str(i), {}).get("clip")
        clip_id = plot.clip if plot.clip is not None else retrieved.get("clip_id") if isinstance(retrieved, dict) \
            else None
        if index is not None and isinstance(clip_id, int) and _clip_exists(index, clip_id):
            clip = index.clip(clip_id)
            images = [np.asarray(ImageOps.fit(Image.fromarray(frame), size, Image.BILINEAR))
                      for frame in index.read_frames(clip_id, _keyframe_indices(clip.end_frame - clip.start_frame))]
            source = f"clip {clip_id}"
        else:
            images = [np.full((size[1], size[0], 3), 128, np.uint8)] * KEYFRAMES
            source = "no clip yet"
        keyframes = _keyframe_indices(settings.frames)[:len(images)]
        boxes = [(e.name, interpolate_boxes(e.boxes, settings.frames)) for e in plot.entities]
        tiles = [[(b[f], name, colours[name]) for name, b in boxes] for f in keyframes]
        # One panel per keyframe, so the gap separates grey keyframes too.
        rows.append(SheetRow([[image] for image in images[:len(keyframes)]],
                             [f"plot {i + 1} ({source}, frames {', '.join(map(str, keyframes))}): {plot.text}"[:160]],
                             boxes=[[t] for t in tiles]))
    if not rows:
        return None
    return paint_sheet(path, rows, tile_height=LAYOUT_TILE_HEIGHT, gap=LAYOUT_GAP, background="white", ink="black")


def assemble_storyboard(rows: list[Path], out: Path) -> None:
    """Stack the plots' rows into storyboard.png (one row per plot)."""
    from storyreel.core.images import read_rgb
    from storyreel.core.sheet import SheetRow, paint_sheet

    paint_sheet(out, [SheetRow([[read_rgb(p, what="storyboard row")]]) for p in rows], background="white")


def summary_table(plots: list[dict]) -> str:
    lines = [f"{'plot':>4}  {'clip':>5}  {'score':>7}  {'frames':>6}  {'tau':>4}  {'status':<9}  {'CLIP-T':>6}  text"]
    for p in plots:
        s = p["settings"]
        score = "pinned" if p["clip"]["score"] is None else f"{p['clip']['score']:.3f}"
        lines.append(f"{p['index']:>4}  {p['clip']['clip_id']:>5}  {score:>7}  {s['frames']:>6}  {s['tau']:>4}  "
                     f"{'kept' if p['reused'] else 'rendered':<9}  {p['metrics']['clip_t']:>6.3f}  {s['text'][:50]}")
    return "\n".join(lines)


# -- helpers -----------------------------------------------------------------------------------------


def _model_ids(preset, clip_model_id: str) -> dict:
    """Ids of every model a plot's frames depend on, known without loading the models."""
    from storyreel.core.models import as_defined, get_preset

    models = get_preset(preset)
    generator = models.generator
    ids = {"preset": models.name, "base": generator.base, "motion_adapter": generator.motion_adapter,
           "controlnet": generator.controlnet, "depth": models.depth, "clip": clip_model_id}
    if generator.scheduler != as_defined(models).generator.scheduler:  # swapped (--scheduler)
        ids["scheduler"] = generator.scheduler.name
    return ids


def _plot_key(story: Story, i: int, clip, models: dict, preset) -> str:
    parts = {"plot": plot_hash(story, i, preset), "clip": clip.clip_id, "video": clip.video_fingerprint,
             "models": models,
             "version": MANIFEST_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _manifest(story: Story, preset, models: dict, plots: list[dict]) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "title": story.title,
        "story_file": str(story.source),
        "story_sha256": hashlib.sha256(Path(story.source).read_bytes()).hexdigest(),
        "preset": models["preset"],
        "models": models,
        "plan": {"consistency": story.consistency},
        "plots": {str(p["index"]): p for p in plots},
        "story": {"output": "story.mp4", "storyboard": "storyboard.png",
                  "frames": sum(p["settings"]["frames"] for p in plots)},
    }


def _merged_plots(previous: dict, plots: list[dict], keys: list[str]) -> list[dict]:
    """This run's plot entries, then the earlier manifest's entries for the other plots that are still
    current (same key: unchanged, so a rerun keeps them); entries of changed plots are dropped."""
    done = {p["index"] for p in plots}
    earlier = [entry for i, entry in previous.get("plots", {}).items()
               if i.isdigit() and int(i) < len(keys) and int(i) not in done and entry.get("key") == keys[int(i)]]
    return sorted(plots + earlier, key=lambda p: p["index"])


def _read_manifest(path: Path, force: bool = False) -> dict:
    """The earlier render's manifest ({} if none). A file that is not one is refused, not overwritten
    (`force`: ignored and replaced)."""
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        plots = manifest["plots"]
        ok = (manifest.get("version") == MANIFEST_VERSION and isinstance(plots, dict)
              and all(isinstance(p, dict) and p.get("index") == int(k) for k, p in plots.items()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if ok:
        return manifest
    if force:
        return {}
    raise UserError(f"--out {path} is not a storyreel render manifest; move it away, choose another --out, "
                    "or pass --force to replace it")


def _row_png(video: Path) -> Path:
    return video.with_suffix(".png")


def _keyframe_indices(length: int) -> list[int]:
    return np.unique(spread_indices(length, min(KEYFRAMES, length))).tolist()
