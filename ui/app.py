"""`storyreel ui`: a Gradio page over the same Python calls the CLI makes (no logic of its own).

Tabs and the front doors they call:
    Index       storyreel.index.build / open_index (stats, errors)
    Search      storyreel.retrieval.search; a picked clip's frames (Index.read_frames) and depth
                (storyreel.depth.conditioning_for_source, cached in the index as the CLI caches it)
    Story       storyreel.story: parse_story (validation with file:line: field), story/tables.py (the
                tables), plan_story (the planner `storyreel plan` calls), story/render.py paint_layouts
                (entity boxes over the plots' keyframes)
    Characters  storyreel.training.train_character; packs listed and previewed with load_pack
    Render      storyreel.story.render_story (reruns keep unchanged plots, as the CLI's do)

Long work runs in Gradio's queue: index builds, trainings and renders one at a time each (their own
concurrency ids) while searches and story edits keep their own workers, so several browser tabs can
search while a render runs. The library's progress objects (`update(**fields)`, core/progress.py's
interface) are fed to `gr.Progress`; a render's progress also checks the cancel flag, so Cancel
stops it between denoising steps and the manifest keeps every plot finished before.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from storyreel.core.errors import UserError
from storyreel.ui.paths import Roots

MOTION_ANY = "any motion"
CSS = "#story-yaml textarea, #index-log textarea {font-family: monospace}"


@dataclass
class UIConfig:
    """What `storyreel ui` was started with; every folder named here is a root the page may use."""

    index: Path | None = None
    story: Path | None = None
    out: Path = Path("storyreel-ui")
    roots: tuple[Path, ...] = ()
    preset: str | None = None
    device: str | None = None  # --device/--dtype, as every model command takes them (core/devices.py)
    dtype: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 20.0
    temp_dir: Path | None = None  # uploads and clip previews; default: a fresh temporary folder

    def root_folders(self) -> list[Path]:
        folders = [self.out]
        if self.index is not None:
            folders.append(self.index)
        if self.story is not None:
            folders.append(Path(self.story).resolve().parent)
        return folders + list(self.roots)


class Cancelled(UserError):
    """Raised from a progress callback when the page's Cancel was pressed."""


class PageProgress:
    """The library's progress interface (core/progress.py: `update(force=False, of=None, **fields)`,
    `done`, `child(label)`, `close`) drawn on one gr.Progress bar.

    The first field of an update with `of` counts toward it ("files=3, of=10"). A child (a render's steps
    within the current plot) moves the bar inside its parent's current unit: with `unit_in_progress` the
    parent's count names the unit being worked on (render: plot 2 of 3 is under way), else the units done
    (index build: 3 of 10 files finished). Every update checks `cancel` first and raises Cancelled."""

    def __init__(self, bar, label: str, cancel: threading.Event | None = None, *, unit_in_progress: bool = False,
                 parent: PageProgress | None = None):
        self.bar, self.label, self.cancel, self.parent = bar, label, cancel, parent
        self.unit_in_progress = unit_in_progress
        # Shared by a parent and its children: what each last reported, and how far the bar got.
        self.state = parent.state if parent else {"main": ({}, None), "child": ({}, None), "fraction": 0.0}

    def update(self, force: bool = False, of: int | None = None, **fields) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{(self.parent or self).label} cancelled")
        count = None
        if of is not None and fields:
            name = next(iter(fields))
            count = (int(fields[name]), int(of))
            fields[name] = f"{count[0]}/{count[1]}"
        if self.parent is None:
            self.state["main"] = (fields, count)
            self.state["child"] = ({}, None)  # a new plot or file: its steps start again
        else:
            self.state["child"] = (fields, count)
        self.state["fraction"] = max(self.state["fraction"], self.fraction())
        self.bar(self.state["fraction"], desc=self.describe())

    def done(self, **fields) -> None:
        self.update(force=True, **fields)

    def child(self, label: str) -> PageProgress:
        return PageProgress(self.bar, label, self.cancel, parent=self)

    def close(self) -> None:
        pass

    def fraction(self) -> float:
        (_, main), (_, child) = self.state["main"], self.state["child"]
        if main is None or main[1] == 0:
            return 0.0
        within = child[0] / child[1] if child and child[1] else 0.0
        root = self.parent or self
        done_units = main[0] - 1 if root.unit_in_progress else main[0]
        return min(1.0, (max(done_units, 0) + (within if done_units < main[1] else 0.0)) / main[1])

    def describe(self) -> str:
        root = self.parent or self
        parts = [f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                 for fields, _ in (self.state["main"], self.state["child"]) for k, v in fields.items()]
        return f"{root.label}: {' '.join(parts)}"


def error_line(err: Exception) -> str:
    return f"**Error:** {md(err)}"


def md(text) -> str:
    """Text shown in a Markdown status as typed: tokens such as <rex> are not HTML tags."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


class StoryreelApp:
    """Handlers of every tab (plain methods, testable without a browser) and the page that wires them."""

    def __init__(self, config: UIConfig):
        self.config = config
        self.config.out = Path(config.out).expanduser().resolve()
        self.roots = Roots(config.root_folders())
        self.temp = Path(config.temp_dir or tempfile.mkdtemp(prefix="storyreel-ui-")).resolve()
        (self.temp / "clips").mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = int(config.max_upload_mb * 1024 * 1024)
        self.render_cancel = threading.Event()
        self._models_lock = threading.Lock()
        self._models: dict = {}

    # -- shared models (loaded once, used by every tab's handlers) -------------------------------

    def device_args(self, training: bool = False) -> dict:
        """device= and dtype= for the library calls, from --device/--dtype (checked once at start)."""
        from storyreel.core.devices import pick_device, pick_dtype

        device = pick_device(self.config.device)
        return {"device": device, "dtype": pick_dtype(self.config.dtype, device, training=training)}

    def embedder(self):
        from storyreel.core.models import resolve_preset
        from storyreel.index.embed import load_clip

        with self._models_lock:
            if "clip" not in self._models:
                self._models["clip"] = load_clip(resolve_preset(self.config.preset), **self.device_args())
            return self._models["clip"]

    def depth_model(self):
        from storyreel import depth

        with self._models_lock:
            if "depth" not in self._models:
                self._models["depth"] = depth.create_depth_model(depth.model_for_preset(self.config.preset),
                                                                     **self.device_args())
            return self._models["depth"]

    # -- Index tab ----------------------------------------------------------------------------------

    def build_index(self, video_dir: str, index_dir: str, bar=None):
        """(status line, stats rows, error rows) after building or updating the index."""
        from storyreel import index

        videos = self.roots.resolve(video_dir, "video folder")
        folder = self.roots.resolve(index_dir, "index folder")
        if not videos.is_dir():
            raise UserError(f"video folder {videos} does not exist or is not a folder")
        progress = PageProgress(_no_bar if bar is None else bar, "index")
        settings = index.BuildSettings(preset=self.config.preset, **self.device_args())
        report = index.build(videos, folder, settings, embedder=self.embedder(), progress=progress)
        status = (f"Indexed {report.videos} videos: {report.new} new, {report.changed} changed, "
                  f"{report.unchanged} unchanged, {report.removed} removed; {report.clips} clips, "
                  f"{report.errors} files failed ({report.seconds:.1f} s).")
        stats, errors = self.index_tables(folder)
        return status, stats, errors

    def show_index(self, index_dir: str):
        folder = self.roots.resolve(index_dir, "index folder")
        stats, errors = self.index_tables(folder)
        return f"Index {folder}: {stats[1][1]} videos, {stats[2][1]} clips.", stats, errors

    def index_tables(self, folder: Path):
        from storyreel import index

        with index.open_index(folder) as opened:
            stats, errors = opened.stats(), opened.errors()
        keys = ("index", "videos", "clips", "errors", "frames", "model_id", "index_type", "dim", "generation")
        return [[k, str(stats[k])] for k in keys], [[e["video"], e["reason"]] for e in errors]

    # -- Search tab ---------------------------------------------------------------------------------

    def search(self, index_dir: str, text: str, image_path, motion: str, min_seconds, k):
        """(status, gallery items [(keyframe, caption)], hits as dicts for the page's state)."""
        from storyreel import index
        from storyreel.retrieval import search

        folder = self.roots.resolve(index_dir, "index folder")
        image = None
        if image_path:
            self.check_upload(image_path)
            image = image_path
        query_text = None if image is not None else (text or "")
        with index.open_index(folder) as opened:
            hits = search(opened, text=query_text, image=image, k=int(k or 5),
                          motion=None if motion in (None, "", MOTION_ANY) else motion,
                          min_seconds=float(min_seconds) if min_seconds else None, embedder=self.embedder())
            gallery = []
            for hit in hits:
                clip = hit.clip
                keyframe = opened.read_frames(clip.clip_id, [(clip.end_frame - clip.start_frame) // 2])[0]
                gallery.append((keyframe, f"#{hit.rank}  clip {clip.clip_id}  score {hit.score:.3f}  {clip.motion}  "
                                          f"{clip.start_s:.1f}–{clip.end_s:.1f} s"))
        query = "the image" if image is not None else repr(text)
        filters = [f"motion {motion}" for _ in [1] if motion not in (None, "", MOTION_ANY)]
        filters += [f"at least {float(min_seconds):g} s" for _ in [1] if min_seconds]
        shown = f"{len(hits)} clips for {query}" + (f" ({', '.join(filters)})" if filters else "")
        return shown + ".", gallery, [h.to_dict() for h in hits]

    def clip_preview(self, index_dir: str, clip_id: int):
        """(clip mp4, depth mp4, description): the clip's time range and its depth, written to the temp folder."""
        from storyreel import depth, index
        from storyreel.core.models import get_preset
        from storyreel.core.writers import write_video

        folder = self.roots.resolve(index_dir, "index folder")
        with index.open_index(folder) as opened:
            clip = opened.clip(int(clip_id))
            stem = self.temp / "clips" / f"{clip.clip_id}-{clip.video_fingerprint[:12]}"
            video, depth_video = stem.with_suffix(".mp4"), Path(f"{stem}-depth.mp4")
            if not video.is_file():
                write_video(opened.read_frames(clip.clip_id), video, fps=clip.fps)
            if not depth_video.is_file():
                frames = min(clip.end_frame - clip.start_frame, get_preset(self.config.preset).generator.frames)
                scale = 128 / min(clip.height, clip.width)
                size = (max(8, round(clip.height * scale / 8) * 8), max(8, round(clip.width * scale / 8) * 8))
                cond, _ = depth.conditioning_for_source(clip.clip_id, model=self.depth_model, size=size,
                                                        num_frames=frames, index_dir=opened)
                gray = (cond.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype("uint8")
                write_video(gray, depth_video, fps=frames / max(clip.end_s - clip.start_s, 1e-3))
        text = (f"Clip {clip.clip_id}: {Path(clip.video).name} {clip.start_s:.2f}–{clip.end_s:.2f} s, "
                f"{clip.motion}, frames {clip.start_frame}–{clip.end_frame}")
        return str(video), str(depth_video), text

    def pin_clip(self, story_path: str, plot_number, clip_id):
        """Pin clip `clip_id` on plot `plot_number` (1-based) of the story file; returns (status, yaml text)."""
        from storyreel.story import load_story, write_story

        if clip_id is None:
            raise UserError("pick a clip in the results first")
        path = self.roots.resolve(story_path, "story file")
        story = load_story(path)
        n = int(plot_number or 0)
        if not 1 <= n <= len(story.plots):
            raise UserError(f"plot number must be 1..{len(story.plots)} for {path.name}, got {n}")
        story.plots[n - 1].clip = int(clip_id)
        write_story(story, path)
        return f"Plot {n} of {path.name} now uses clip {clip_id}.", path.read_text(encoding="utf-8")

    def check_upload(self, path) -> Path:
        path = Path(path)
        if path.stat().st_size > self.max_upload_bytes:
            raise UserError(f"{path.name}: uploads are limited to {self.config.max_upload_mb:g} MB "
                            f"(restart `storyreel ui` with --max-upload-mb)")
        return path

    # -- Story tab ----------------------------------------------------------------------------------

    def load_story_file(self, story_path: str):
        """(status, yaml text, character rows, plot rows) of the story file."""
        from storyreel.story import parse_story
        from storyreel.story.tables import story_tables

        path = self.roots.resolve(story_path, "story file")
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if not text:
            return f"{path.name} does not exist yet: plan or type a story and save.", "", [], []
        try:
            story = parse_story(text, path)
        except UserError as err:
            return f"**Not valid:** {md(err)}", text, [], []
        return f"Loaded {path.name}: {len(story.plots)} plots.", text, *story_tables(story, path)

    def save_yaml(self, story_path: str, text: str):
        """Validate `text` as the story file and write it; an invalid story changes no file."""
        from storyreel.core.files import write_text_atomic
        from storyreel.story import parse_story
        from storyreel.story.tables import story_tables

        path = self.roots.resolve(story_path, "story file")
        try:
            story = parse_story(text, path)
        except UserError as err:
            return f"**Not saved:** {md(err)}", [], []
        path.parent.mkdir(parents=True, exist_ok=True)  # e.g. the output folder, before its first render
        write_text_atomic(path, text if text.endswith("\n") else text + "\n")
        return f"Saved {path.name}: {len(story.plots)} plots.", *story_tables(story, path)

    def save_tables(self, story_path: str, character_rows, plot_rows):
        """The tables as the story file's characters and plots (other fields kept); validated as YAML is."""
        from storyreel.story.tables import tables_yaml

        path = self.roots.resolve(story_path, "story file")
        previous = path.read_text(encoding="utf-8") if path.is_file() else ""
        text = tables_yaml(previous, path, character_rows, plot_rows)
        status, characters, plots = self.save_yaml(str(path), text)
        return status, (text if status.startswith("Saved") else None), characters, plots

    def plan(self, story_path: str, prose: str, characters_text: str, llm_url: str, llm_model: str):
        """(status, yaml text) of a new plan; not saved until the user saves it."""
        from storyreel.story import LLMOptions, PlanOptions, parse_cast, plan_story, story_yaml

        path = self.roots.resolve(story_path, "story file")
        cast = parse_cast((characters_text or "").splitlines(), "character line",
                          resolve_pack=lambda text: self.roots.resolve(text, "pack"))
        llm = LLMOptions(llm_url.strip(), (llm_model or "").strip()) if (llm_url or "").strip() else None
        story = plan_story(prose or "", cast, PlanOptions(title=path.stem, preset=self.config.preset, llm=llm))
        return f"Planned {len(story.plots)} plots: check them, then Save.", story_yaml(story, path)

    def story_layouts(self, story_path: str):
        """The layout picture (png path, or None): each plot with entities, its boxes over its source clip's
        keyframes (pinned, or the last render's) or neutral frames (story/storyboard.py
        paint_layouts). An unreadable story shows none: its error is in the status line already."""
        import contextlib

        from storyreel import index
        from storyreel.story import load_story
        from storyreel.story.storyboard import paint_layouts

        try:
            path = self.roots.resolve(story_path, "story file")
            story = load_story(path) if path.is_file() else None
        except UserError:
            return None
        if story is None:
            return None
        with contextlib.ExitStack() as stack:
            opened = None
            if self.config.index is not None and Path(self.config.index).is_dir():
                with contextlib.suppress(UserError):  # an index that cannot open: grey frames (Index tab says why)
                    opened = stack.enter_context(index.open_index(self.config.index))
            # A fresh file per call: the page then never shows a cached older picture.
            picture = Path(tempfile.mkdtemp(prefix="layout-", dir=self.temp)) / "layout.png"
            return paint_layouts(story, picture, index=opened, render_dir=self.config.out / "render",
                                 preset=self.config.preset)

    # -- Characters tab -----------------------------------------------------------------------------

    def train(self, files, token: str, init_word: str, steps, out_path: str, bar=None):
        """Train a pack from uploaded images (copied to a fresh temp folder); returns (status, pack rows)."""
        import shutil

        from storyreel.core.models import resolve_preset
        from storyreel.training.train import TrainSettings, train_character

        if not files:
            raise UserError("upload 1–50 images of the character first")
        out = self.roots.resolve(out_path, "pack file")
        if out.suffix != ".safetensors":
            raise UserError(f"pack file {out} must end in .safetensors")
        images = Path(tempfile.mkdtemp(prefix="images-", dir=self.temp))
        for n, file in enumerate(files):
            source = self.check_upload(getattr(file, "name", file))
            shutil.copyfile(source, images / f"{n:03d}{source.suffix.lower()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = TrainSettings(token=(token or "").strip(), init_word=(init_word or "").strip(),
                                 steps=int(steps or 1))
        if not settings.token or not settings.init_word:
            raise UserError("a pack needs a token (e.g. <rex>) and an init word (e.g. dog)")
        summary = train_character(images, out, settings, preset=resolve_preset(self.config.preset),
                                  progress=PageProgress(_no_bar if bar is None else bar, "train"),
                                  **self.device_args(training=True))
        return md(f"Trained {summary['token']} for {summary['steps']} steps from {summary['images']} images "
                f"into {out}."), self.pack_rows()

    def pack_files(self) -> list[Path]:
        """Packs the page knows of: *.safetensors in each root, its packs/ folder and the story's packs."""
        found = []
        for root in self.roots.folders:
            for folder in (root, root / "packs"):
                found += sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        return sorted(set(found))

    def pack_rows(self):
        from storyreel.generation.characters.pack import load_pack

        rows = []
        for path in self.pack_files():
            try:
                pack = load_pack(path)
            except UserError as err:
                rows.append([str(path), "", "", f"unreadable: {err}"])
                continue
            images = 0 if pack.concept_images is None else len(pack.concept_images)
            rows.append([str(path), pack.token, pack.mode, f"{images} images"])
        return rows

    def preview_pack(self, pack_path: str):
        from storyreel.generation.characters.pack import load_pack

        path = self.roots.resolve(pack_path, "pack file")
        pack = load_pack(path)
        images = [] if pack.concept_images is None else [img.cpu().numpy() for img in pack.concept_images]
        return md(f"{path.name}: token {pack.token}, {len(images)} concept images."), images

    # -- Render tab ---------------------------------------------------------------------------------

    def render(self, story_path: str, index_dir: str, out_dir: str, bar=None):
        """(status, plot rows, storyboard png, story mp4, plot mp4s)."""
        from storyreel.story import RenderOptions, render_story

        story = self.roots.resolve(story_path, "story file")
        folder = self.roots.resolve(index_dir, "index folder")
        out = self.roots.resolve(out_dir, "output folder")
        self.render_cancel.clear()
        progress = PageProgress(_no_bar if bar is None else bar, "render", self.render_cancel,
                                unit_in_progress=True)
        log = _Lines()
        try:
            manifest = render_story(story, folder, out, RenderOptions(preset=self.config.preset, **self.device_args()),
                                    progress=progress, log=log)
        except Cancelled:
            kept = len(_read_plots(out / "manifest.json"))
            return (f"Render cancelled: {kept} finished plots are kept in {out / 'manifest.json'}; "
                    f"a rerun renders the rest."), *self.render_outputs(out)
        plots = manifest.plots
        kept = sum(p.reused for p in plots)
        status = f"Rendered {len(plots)} plots: {kept} kept, {len(plots) - kept} rendered. {out / 'story.mp4'}"
        return status, *self.render_outputs(out)

    def cancel_render(self):
        self.render_cancel.set()
        return "Cancelling: the render stops after the current denoising step."

    def render_outputs(self, out: Path):
        plots = _read_plots(out / "manifest.json")
        rows = [[p["index"] + 1, p["clip"]["clip_id"], "kept" if p.get("reused") else "rendered",
                 p["settings"]["text"], p["output"]] for p in plots]
        board, video = out / "storyboard.png", out / "story.mp4"
        clips = [str(out / p["output"]) for p in plots if (out / p["output"]).is_file()]
        return (rows, str(board) if board.is_file() else None, str(video) if video.is_file() else None,
                gallery_videos(clips))

    # -- the page: layout and wiring only (the handlers above make the library calls) ---------------

    def blocks(self):
        """The gr.Blocks page (queue set up); `launch` serves it."""
        import gradio as gr

        with gr.Blocks(title="storyreel", analytics_enabled=False) as page:
            gr.Markdown("# storyreel\nIndex videos, search clips, edit the story, train characters, render. "
                        f"Folders this page may use: {', '.join(f'`{r}`' for r in self.roots.folders)}")
            with gr.Tab("Index", id="index"):
                index_tab = self._index_tab()
            with gr.Tab("Search", id="search"):
                search_tab = self._search_tab(index_tab.index_dir)
            with gr.Tab("Story", id="story"):
                story_tab = self._story_tab()
            with gr.Tab("Characters", id="characters"):
                packs = self._characters_tab()
            with gr.Tab("Render", id="render"):
                render_outputs = self._render_tab()
            # Search's "Use for plot N" writes the Story tab's file.
            search_tab.pin.click(guard(self.pin_clip, 2), [story_tab.path, search_tab.plot_number, search_tab.picked],
                                 [search_tab.status, story_tab.yaml]
                                 ).then(self.story_layouts, [story_tab.path], [story_tab.layouts])
            self._on_page_load(page, index_tab, story_tab, packs, render_outputs)
        # Several searches (and story edits) run beside one build, one training and one render.
        page.queue(default_concurrency_limit=4)
        return page

    def _index_tab(self) -> SimpleNamespace:
        import gradio as gr

        with gr.Row():
            video_dir = gr.Textbox(label="Video folder", elem_id="index-videos", scale=3)
            index_dir = gr.Textbox(label="Index folder", value=str(self.config.index or ""), elem_id="index-dir",
                                   scale=3)
        with gr.Row():
            build = gr.Button("Build / update", variant="primary", elem_id="index-build")
            show = gr.Button("Show index", elem_id="index-show")
        status = gr.Markdown(elem_id="index-status")
        with gr.Row():
            stats = gr.Dataframe(headers=["field", "value"], label="Stats", elem_id="index-stats",
                                 interactive=False, type="array")
            errors = gr.Dataframe(headers=["video", "reason"], label="Files that failed",
                                  elem_id="index-errors", interactive=False, type="array")
        # Handlers with a `progress=gr.Progress()` default get a live bar: Gradio's own idiom (B008 below).
        build.click(guard(lambda v, i, progress=gr.Progress(): self.build_index(v, i, progress), 3),  # noqa: B008
                    [video_dir, index_dir], [status, stats, errors], concurrency_id="index", concurrency_limit=1)
        show.click(guard(self.show_index, 3), [index_dir], [status, stats, errors])
        return SimpleNamespace(index_dir=index_dir, outputs=[status, stats, errors])

    def _search_tab(self, index_dir) -> SimpleNamespace:
        import gradio as gr

        from storyreel.index.motion import MOTION_LABELS

        with gr.Row():
            query = gr.Textbox(label="Text query", elem_id="search-text", scale=3)
            image = gr.Image(label="…or an image", type="filepath", elem_id="search-image", height=120,
                             sources=["upload"])
        with gr.Row():
            motion = gr.Dropdown([MOTION_ANY, *MOTION_LABELS], value=MOTION_ANY, label="Motion",
                                 elem_id="search-motion")
            min_seconds = gr.Number(label="Min seconds", value=0, elem_id="search-min-seconds")
            k = gr.Number(label="Results (k)", value=6, precision=0, elem_id="search-k")
            go = gr.Button("Search", variant="primary", elem_id="search-go")
        status = gr.Markdown(elem_id="search-status")
        results = gr.Gallery(label="Results", columns=6, height="auto", elem_id="search-results",
                             allow_preview=False)
        hits = gr.State([])
        picked = gr.State(None)
        picked_text = gr.Markdown(elem_id="search-picked")
        with gr.Row():
            clip_video = gr.Video(label="Clip", elem_id="search-clip", autoplay=True, height=220)
            depth_video = gr.Video(label="Depth", elem_id="search-depth", autoplay=True, height=220)
        with gr.Row():
            plot_number = gr.Number(label="Plot N", value=1, precision=0, elem_id="search-plot")
            pin = gr.Button("Use for plot N", elem_id="search-pin")
        for trigger in (go.click, query.submit):
            trigger(guard(self.search, 3), [index_dir, query, image, motion, min_seconds, k], [status, results, hits],
                    concurrency_id="search")

        def select(index_folder, hit_rows, evt: gr.SelectData):
            clip_id = hit_rows[evt.index]["clip_id"]
            video, depth_file, text = self.clip_preview(index_folder, clip_id)
            return text, video, depth_file, clip_id

        select.__annotations__["evt"] = gr.SelectData  # a real class: Gradio injects the event by its type
        results.select(guard(select, 4), [index_dir, hits], [picked_text, clip_video, depth_video, picked],
                       concurrency_id="search")
        return SimpleNamespace(status=status, plot_number=plot_number, picked=picked, pin=pin)

    def story_file(self) -> str:
        """The story file the page opens with: --story, else story.yaml in the output folder."""
        return str(Path(self.config.story).resolve()) if self.config.story else str(self.config.out / "story.yaml")

    def _story_tab(self) -> SimpleNamespace:
        import gradio as gr

        from storyreel.story.tables import CHARACTER_COLUMNS, PLOT_COLUMNS

        with gr.Row():
            path = gr.Textbox(label="Story file", value=self.story_file(), elem_id="story-path", scale=4)
            load = gr.Button("Load", elem_id="story-load")
        status = gr.Markdown(elem_id="story-status")
        with gr.Tab("Table"):
            characters = gr.Dataframe(headers=CHARACTER_COLUMNS, label="Characters", type="array",
                                      interactive=True, elem_id="story-characters", column_count=5)
            plots = gr.Dataframe(headers=PLOT_COLUMNS, label="Plots", type="array", interactive=True,
                                 elem_id="story-plots", column_count=len(PLOT_COLUMNS), wrap=True)
            save_table = gr.Button("Save table", variant="primary", elem_id="story-save-table")
        with gr.Tab("YAML"):
            story_yaml = gr.Textbox(label="Story YAML", lines=18, max_lines=40, elem_id="story-yaml")
            save = gr.Button("Save YAML", variant="primary", elem_id="story-save")
        with gr.Tab("Plan from prose"):
            prose = gr.Textbox(label="Story prose", lines=6, elem_id="plan-prose")
            cast = gr.Textbox(label="Characters, one per line: NAME=TOKEN[=PACK]", lines=2,
                              elem_id="plan-characters")
            with gr.Row():
                llm_url = gr.Textbox(label="LLM URL (optional; nothing is sent without it)",
                                     elem_id="plan-llm-url")
                llm_model = gr.Textbox(label="LLM model", elem_id="plan-llm-model")
            plan = gr.Button("Plan into the YAML editor", elem_id="plan-go")
        gr.Markdown("**Entity boxes** over each planned plot's source keyframes (grey frames until a clip "
                    "is pinned or rendered):")
        # No label: Gradio draws it over the picture's top-left corner, where the plot's caption is.
        layouts = gr.Image(show_label=False, type="filepath", interactive=False, elem_id="story-layouts")
        # The layout pictures follow every load and save: drawn from the file as saved.
        shown = [status, story_yaml, characters, plots]
        load.click(guard(self.load_story_file, 4), [path], shown).then(self.story_layouts, [path], [layouts])
        save.click(guard(self.save_yaml, 3), [path, story_yaml], [status, characters, plots]
                   ).then(self.story_layouts, [path], [layouts])
        save_table.click(guard(lambda p, c, r: _skip_none(self.save_tables(p, c, r), gr.skip), 4),
                         [path, characters, plots], shown).then(self.story_layouts, [path], [layouts])
        plan.click(guard(self.plan, 2), [path, prose, cast, llm_url, llm_model], [status, story_yaml])
        return SimpleNamespace(path=path, yaml=story_yaml, layouts=layouts, shown=shown)

    def _characters_tab(self):
        """Builds the tab; returns its pack table."""
        import gradio as gr

        with gr.Row():
            uploads = gr.File(label="Character images", file_count="multiple", file_types=["image"],
                              elem_id="char-images")
            with gr.Column():
                token = gr.Textbox(label="Token", placeholder="<rex>", elem_id="char-token")
                init_word = gr.Textbox(label="Init word", placeholder="dog", elem_id="char-word")
                steps = gr.Number(label="Steps", value=100, precision=0, elem_id="char-steps")
                pack_out = gr.Textbox(label="Pack file", value=str(self.config.out / "packs" / "new.safetensors"),
                                      elem_id="char-out")
                train = gr.Button("Train pack", variant="primary", elem_id="char-train")
        status = gr.Markdown(elem_id="char-status")
        packs = gr.Dataframe(headers=["pack", "token", "mode", "concept"], label="Packs", type="array",
                             interactive=False, elem_id="char-packs")
        with gr.Row():
            pack_path = gr.Textbox(label="Pack to preview", elem_id="char-preview-path", scale=4)
            preview = gr.Button("Preview", elem_id="char-preview")
        pack_images = gr.Gallery(label="Concept images", columns=8, height=180, object_fit="contain",
                                 elem_id="char-gallery")
        train.click(guard(lambda f, t, w, s, o, progress=gr.Progress(): self.train(f, t, w, s, o, progress), 2),  # noqa: B008
                    [uploads, token, init_word, steps, pack_out], [status, packs], concurrency_id="train",
                    concurrency_limit=1)
        preview.click(guard(self.preview_pack, 2), [pack_path], [status, pack_images])
        return packs

    def _render_tab(self) -> list:
        """Builds the tab; returns the outputs a render fills (status, plot table, storyboard, videos)."""
        import gradio as gr

        config = self.config
        with gr.Row():
            story = gr.Textbox(label="Story file", value=self.story_file(), elem_id="render-story")
            index_dir = gr.Textbox(label="Index folder", value=str(config.index or ""), elem_id="render-index")
            out = gr.Textbox(label="Output folder", value=str(config.out / "render"), elem_id="render-out")
        with gr.Row():
            render = gr.Button("Render", variant="primary", elem_id="render-go")
            cancel = gr.Button("Cancel", variant="stop", elem_id="render-cancel")
        status = gr.Markdown(elem_id="render-status")
        plot_table = gr.Dataframe(headers=["plot", "clip", "status", "text", "file"], type="array",
                                  interactive=False, label="Plots", elem_id="render-plots")
        with gr.Row():
            story_video = gr.Video(label="story.mp4", elem_id="render-video", height=240)
            storyboard = gr.Image(label="storyboard.png", elem_id="render-storyboard", type="filepath")
        plot_videos = gr.Gallery(label="Plot clips", columns=6, height="auto", elem_id="render-clips")
        outputs = [status, plot_table, storyboard, story_video, plot_videos]
        render.click(guard(lambda s, i, o, progress=gr.Progress(): self.render(s, i, o, progress), 5),  # noqa: B008
                     [story, index_dir, out], outputs, concurrency_id="render", concurrency_limit=1)
        cancel.click(self.cancel_render, None, [status], queue=False)
        return outputs

    def _on_page_load(self, page, index_tab: SimpleNamespace, story_tab: SimpleNamespace, packs, render_outputs):
        """On open, each tab shows what is already there."""
        import gradio as gr

        page.load(guard(self.load_story_file, 4), [story_tab.path], story_tab.shown
                  ).then(self.story_layouts, [story_tab.path], [story_tab.layouts])
        page.load(lambda: self.pack_rows(), None, [packs])
        if self.config.index is not None:
            page.load(guard(self.show_index, 3), [index_tab.index_dir], index_tab.outputs)
        out = self.config.out / "render"
        page.load(lambda: (None, *self.render_outputs(out)) if (out / "manifest.json").is_file()
                  else (gr.skip(),) * 5, None, render_outputs)

    def launch(self, *, block: bool = True, quiet: bool = False):
        """Serve the page on config.host:config.port; returns (page, url). Says where it listens and whether
        only this machine can reach it."""
        import sys

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        os.environ["GRADIO_TEMP_DIR"] = str(self.temp)  # uploads land here, not in a shared system folder
        page = self.blocks()
        host, port = self.config.host, self.config.port
        if not quiet:
            reach = ("only this machine can open it" if host in ("127.0.0.1", "localhost", "::1")
                     else "other machines can open it too")
            print(f"storyreel ui: serving on http://{host}:{port} (bound to {host}: {reach}; "
                  f"folders: {', '.join(str(r) for r in self.roots.folders)}; uploads up to "
                  f"{self.config.max_upload_mb:g} MB into {self.temp})", file=sys.stderr, flush=True)
        page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, show_error=True,
                    max_file_size=self.max_upload_bytes, allowed_paths=[str(r) for r in self.roots.folders],
                    ssr_mode=False, css=CSS, footer_links=[])
        return page, f"http://{host}:{port}"


# -- helpers ---------------------------------------------------------------------------------------------


def guard(handler, outputs: int, status: int = 0):
    """Run `handler`; a UserError becomes one "**Error:** ..." line in output `status`, the other outputs
    unchanged (the same one-line messages the CLI prints; anything else is a bug and shows as one)."""
    import gradio as gr

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except UserError as err:
            values = [gr.skip()] * outputs
            values[status] = error_line(err)
            return tuple(values) if outputs > 1 else values[0]

    return run


def _skip_none(values, skip):
    return tuple(skip() if v is None else v for v in values)


def gallery_videos(paths: list[str]):
    return [(p, Path(p).name) for p in paths]


def _read_plots(manifest: Path) -> list[dict]:
    import json

    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return []
    return sorted(data.get("plots", {}).values(), key=lambda p: p["index"])


class _Lines:
    """A `log` for render_story: keeps its notes and summary table instead of printing them to the server's stderr."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass



def _no_bar(*args, **kwargs) -> None:
    """The bar of a handler called without a page (a gr.Progress is falsy, so callers test `is None`)."""
