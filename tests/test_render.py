"""Story rendering end to end with the tiny preset: outputs, resume, reproducibility, validation."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from fake_index import DIM, FakeEmbedder, MemoryIndex, clip_row
from PIL import Image

from storyreel.core.errors import UserError
from storyreel.generation import GenerationSettings
from storyreel.generation.evaluate import read_clip_frames
from storyreel.generation.pipeline import StructureGuidedPipeline
from storyreel.story.clips import choose_clips
from storyreel.story.demo import CHARACTERS, STORY, write_character_images
from storyreel.story.manifest import Manifest, read_manifest
from storyreel.story.render import RenderOptions, render_story
from storyreel.story.storyboard import PANEL_HEIGHT


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny index of 3 synthetic videos (9 clips) and two character packs, shared read-only: tests
    render from their own copy (`workspace`)."""
    from storyreel import index
    from storyreel.synthetic import make_corpus
    from storyreel.training.train import TrainSettings, train_character

    root = tmp_path_factory.mktemp("render")
    make_corpus(root / "videos", num_videos=3, shots_per_video=3, shot_seconds=1.5, size=(128, 72), fps=12)
    index.build(root / "videos", root / "index", index.BuildSettings(preset="tiny"))
    (root / "packs").mkdir()
    for name, token, word, colour, shape in CHARACTERS:
        write_character_images(root / "images" / name.lower(), colour, shape, count=2)
        train_character(root / "images" / name.lower(), root / "packs" / f"{name.lower()}.safetensors",
                        TrainSettings(token=token, init_word=word, steps=2, size=32, frames=2), preset="tiny")
    return root


@pytest.fixture
def sampler_calls(monkeypatch):
    calls = []
    original = StructureGuidedPipeline.__call__

    def counting(self, prompt, *args, **kwargs):
        calls.append(prompt)
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(StructureGuidedPipeline, "__call__", counting)
    return calls


@pytest.fixture
def workspace(corpus, tmp_path):
    """This test's copy of the index (renders cache depth in it) and of the packs (story files name them
    relative to themselves); story files are written here too. The videos stay shared, read-only."""
    shutil.copytree(corpus / "index", tmp_path / "index")
    shutil.copytree(corpus / "packs", tmp_path / "packs")
    return tmp_path


def render(story, index, out, **options) -> dict:
    """render_story with RenderOptions(**options); the manifest as manifest.json holds it."""
    return render_story(story, index, out, RenderOptions(**options)).to_dict()


def write_story(folder, text=STORY):
    path = folder / "story.yaml"
    path.write_text(text)
    return path


def plot_frames(out):
    return [read_clip_frames(out / "plots" / f"{i:02d}.mp4") for i in range(3)]


def assert_timeline_matches(path, manifest, out):
    """story.otio read back through opentimelineio: one clip per plot on each track, the right ranges."""
    import opentimelineio as otio

    timeline = otio.adapters.read_from_file(str(path))
    generated, sources = timeline.tracks
    plots = [manifest["plots"][str(i)] for i in range(len(manifest["plots"]))]
    assert [c.media_reference.target_url for c in generated] == [str((out / p["output"]).resolve()) for p in plots]
    assert [(c.source_range.start_time.to_frames(), c.source_range.duration.to_frames(), c.source_range.duration.rate)
            for c in generated] == [(0, p["settings"]["frames"], p["settings"]["fps"]) for p in plots]
    assert [c.media_reference.target_url for c in sources] == [p["clip"]["video"] for p in plots]
    # each source clip is the window its plot's structure played (the plot sidecar's structure info)
    played = [json.loads((out / (p["output"] + ".json")).read_text())["structure"] for p in plots]
    assert [(c.source_range.start_time.to_frames(), c.source_range.start_time.rate,
             c.effects[0].time_scalar) for c in sources] == [
        (p["clip"]["start_frame"] + s["frame_indices"][0], p["clip"]["fps"], s["speed"])
        for p, s in zip(plots, played)]
    assert all(c.source_range.end_time_exclusive().to_frames() <= p["clip"]["end_frame"]
               for c, p in zip(sources, plots))
    assert [c.metadata["storyreel"]["clip_id"] for c in sources] == [p["clip"]["clip_id"] for p in plots]


def test_render_resume_edit_and_reproduce(workspace, tmp_path, sampler_calls):
    story = write_story(workspace)
    out = tmp_path / "out"

    # 1. First render: every output, three different source clips, two characters.
    manifest = render(story, workspace / "index", out, preset="tiny")
    assert len(sampler_calls) == 3
    for name in ("story.mp4", "storyboard.png", "manifest.json", "plots/00.mp4", "plots/01.mp4", "plots/02.mp4"):
        assert (out / name).is_file(), name
    assert_timeline_matches(out / "story.otio", manifest, out)
    plots = [manifest["plots"][str(i)] for i in range(3)]
    clip_ids = [p["clip"]["clip_id"] for p in plots]
    assert len(set(clip_ids)) == 3
    assert [p["clip"]["motion"] for p in plots] == ["pan-left", "tilt-up", "zoom-in"]  # motion preference honoured
    assert [p["settings"]["prompt"] for p in plots] == [
        "<teddy> walks through the forest, storybook illustration",
        "<robo> looks up at the sky, storybook illustration",
        "<teddy> and <robo> meet in a clearing, storybook illustration",
    ]
    assert [[c["token"] for c in p["settings"]["characters"]] for p in plots] == [["<teddy>"], ["<robo>"],
                                                                                  ["<teddy>", "<robo>"]]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    # manifest.json's keys, in the order readers see them; the typed manifest reads back what it wrote.
    assert list(manifest) == ["version", "title", "story_file", "story_sha256", "preset", "models", "plan", "plots",
                              "story"]
    assert list(plots[0]) == ["index", "output", "settings", "clip", "notes", "structure_forward_passes", "timings",
                              "metrics", "key", "reused"]
    assert Manifest.from_dict(manifest).to_dict() == manifest
    first = plot_frames(out)
    story_frames = read_clip_frames(out / "story.mp4")
    assert len(story_frames) == sum(p["settings"]["frames"] for p in plots) == 24
    board = Image.open(out / "storyboard.png")
    row = Image.open(out / "plots" / "00.png")
    assert board.height == 3 * row.height and row.height > PANEL_HEIGHT

    # 2. Rerun: nothing is generated, frames stay the same.
    again = render(story, workspace / "index", out, preset="tiny")
    assert len(sampler_calls) == 3
    assert all(again["plots"][str(i)]["reused"] for i in range(3))

    # 3. Editing one plot's text regenerates that plot only.
    write_story(workspace, STORY.replace("Robo looks up at the sky.", "Robo looks up at the stars."))
    edited = render(story, workspace / "index", out, preset="tiny")
    assert sampler_calls[3:] == ["<robo> looks up at the stars, storybook illustration"]
    assert [edited["plots"][str(i)]["reused"] for i in range(3)] == [True, False, True]
    write_story(workspace)

    # 4. The same inputs in a fresh folder reproduce identical frames.
    fresh = tmp_path / "fresh"
    render(story, workspace / "index", fresh, preset="tiny")
    for a, b in zip(first, plot_frames(fresh)):
        np.testing.assert_array_equal(a, b)

    # generate_clip writes the same sidecar and frames as render for the same plot (one generation path).
    from storyreel.generation.generate import ClipRequest, generate_clip

    sidecar = json.loads((out / "plots" / "00.mp4.json").read_text())
    teddy = str((workspace / "packs" / "teddy.safetensors").resolve())
    assert sidecar["characters"] == [{"token": "<teddy>", "pack": teddy, "mode": "timeinv", "recipe": "fast",
                                      "timeinv_rows": 1000, "anchors": 50, "lora_rank": 4,
                                      "lora_targets": ["to_q", "to_k", "to_v", "to_out.0"]}]
    assert sidecar["lora_scale"] == 1.0
    assert sidecar["structure_forward_passes"] == plots[0]["structure_forward_passes"] > 0
    assert [w["frames"] for w in sidecar["windows"]] == [8] and sidecar["notes"] == plots[0]["notes"]
    s = plots[0]["settings"]
    settings = GenerationSettings(**{k: s[k] for k in GenerationSettings.__dataclass_fields__})
    request = ClipRequest(s["prompt"], plots[0]["clip"]["clip_id"], negative_prompt=s["negative_prompt"],
                          index_dir=workspace / "index")
    alone = generate_clip(request, tmp_path / "alone.mp4", settings, preset="tiny", characters=[teddy])
    same = lambda meta: {**meta, "output": None, "structure": {**meta["structure"], "cache": None}}  # noqa: E731
    assert alone["structure"]["cache"] == "hit" and same(alone) == same(sidecar)  # render cached the depth
    np.testing.assert_array_equal(read_clip_frames(tmp_path / "alone.mp4"), first[0])


def test_interrupted_render_keeps_finished_plots(workspace, tmp_path, monkeypatch):
    story = write_story(workspace)
    out = tmp_path / "out"
    original, done = StructureGuidedPipeline.__call__, []

    def fail_on_third(self, *args, **kwargs):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StructureGuidedPipeline, "__call__", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        render(story, workspace / "index", out, preset="tiny")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["plots"]) == ["0", "1"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["00.mp4", "00.mp4.json", "00.png",
                                                                  "01.mp4", "01.mp4.json", "01.png"]
    assert not (out / "story.mp4").exists()


def test_pinned_clip_not_in_index_is_a_one_line_error(workspace, tmp_path):
    story = write_story(workspace, STORY.replace("    motion: tilt-up\n", "    motion: tilt-up\n    clip: 999\n"))
    with pytest.raises(UserError) as err:
        render(story, workspace / "index", tmp_path / "out", preset="tiny")
    assert str(err.value) == f"{story}:12: plots[1].clip: clip 999 is not in the index (see `storyreel index ls`)"
    assert not (tmp_path / "out" / "plots").exists() or not any((tmp_path / "out" / "plots").iterdir())


def test_render_command_prints_summary(workspace, tmp_path, run_cli):
    story = write_story(workspace)
    # no --models: the index was built with `tiny`, so the render takes that preset (and its CLIP) from it
    proc = run_cli("render", story, "--index", workspace / "index", "--out", tmp_path / "cli", "--json",
                   env={"STORYREEL_MODELS": "default"})
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["story"]["frames"] == 24 and manifest["preset"] == "tiny"
    assert manifest["models"]["clip"] == "open_clip:tiny:seed0"
    assert "plot   clip    score  frames" in proc.stderr  # the summary table
    assert "[render] plot=3/3 stage=write" in proc.stderr  # progress: plain lines, stderr is not a terminal
    assert "[render > steps] steps=1/4" in proc.stderr  # denoising steps inside a plot
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr


def test_render_shows_plot_and_step_bars_on_a_terminal(workspace, tmp_path):
    from test_progress import ETA, cli

    story = write_story(workspace, "title: T\ndefaults: {frames: 4, fps: 8, height: 32, width: 32, steps: 3, seed: 0}\n"
                                   "plots:\n  - text: A bear walks.\n")
    code, stderr = cli("render", story, "--index", workspace / "index", "--out", tmp_path / "out", "--models", "tiny")
    assert code == 0
    assert re.search(r"render: 100%.*1/1", stderr) and re.search(r"render > steps:.*3/3", stderr)
    assert ETA.search(stderr) and "plot   clip    score" in stderr  # the summary table after the bars


def test_demo_command_runs_the_whole_chain(tmp_path, run_cli):
    proc = run_cli("demo", "--out", tmp_path / "demo", "--models", "tiny")
    assert proc.returncode == 0, proc.stderr
    assert "noise-like" in proc.stdout
    render = tmp_path / "demo" / "render"
    manifest = json.loads((render / "manifest.json").read_text())
    assert len({p["clip"]["clip_id"] for p in manifest["plots"].values()}) == 3
    assert len(read_clip_frames(render / "story.mp4")) == manifest["story"]["frames"] == 24
    assert (render / "storyboard.png").is_file()
    for step in ("1/5 synthetic corpus", "2/5 index", "3/5 character packs", "4/5 story file", "5/5 render"):
        assert f"[demo] step={step}" in proc.stderr


def two_clip_index():
    """Clip 1 pans left, clip 2 is static, both 2 s long; for every query (`QUERIES`) clip 1 ranks first."""
    vectors = {1: np.tile(np.eye(DIM)[0], (2, 1)), 2: np.tile(np.eye(DIM)[0] + np.eye(DIM)[1], (2, 1))}
    return MemoryIndex([clip_row(1, motion="pan-left"), clip_row(2)], vectors, path="some_index")


QUERIES = FakeEmbedder({}, default=np.eye(DIM)[0])  # every query text is the same vector


def motion_story(tmp_path, motions):
    from storyreel.story.format import load_story

    plots = "".join(f"  - text: Plot {n}.\n" + (f"    motion: {m}\n" if m else "") for n, m in enumerate(motions))
    path = tmp_path / "story.yaml"
    path.write_text(f"title: t\ndefaults: {{frames: 8, fps: 8}}\nplots:\n{plots}")
    return load_story(path)


def test_choose_clips_notes_only_fallbacks_that_happened(tmp_path):
    # Real search: a pan-left filter finds clip 1 only, any motion finds [1, 2] (1 first).
    story = motion_story(tmp_path, [None, "pan-left", "pan-left", None])
    picks = choose_clips(story, two_clip_index(), embedder=QUERIES)
    assert [p.clip.clip_id for p in picks] == [1, 2, 1, 1]
    assert [p.notes for p in picks] == [
        [],  # no motion asked: any motion is the first attempt, not a fallback
        ["no unused clip with motion 'pan-left'; any motion"],
        ["no unused clip with motion 'pan-left'; any motion", "no unused clip of at least 1 s; any length",
         "clip 1 reused: no unused clip fits plot 2"],
        ["no unused clip of at least 1 s; any length", "clip 1 reused: no unused clip fits plot 3"],
    ]


def test_choose_clips_from_an_empty_index_is_a_one_line_error(tmp_path):
    empty = MemoryIndex([], path="some_index")
    with pytest.raises(UserError) as err:
        choose_clips(motion_story(tmp_path, [None]), empty, embedder=QUERIES)
    assert str(err.value) == ("index some_index has no clips to render plot 0 from; "
                              "add videos with `storyreel index build VIDEO_DIR --index some_index`")


def test_render_mixes_backends_and_a_rerun_regenerates_nothing(workspace, tmp_path, monkeypatch):
    from storyreel.generation.zero import StructureGuidedZeroPipeline

    calls = []
    for pipeline_class in (StructureGuidedPipeline, StructureGuidedZeroPipeline):
        def counting(self, prompt, *args, original=pipeline_class.__call__, **kwargs):
            calls.append((type(self).__name__, prompt))
            return original(self, prompt, *args, **kwargs)

        monkeypatch.setattr(pipeline_class, "__call__", counting)
    mixed = STORY.replace("    motion: tilt-up\n", "    motion: tilt-up\n    backend: t2v-zero\n")
    story, out = write_story(workspace, mixed), tmp_path / "out"
    manifest = render(story, workspace / "index", out, preset="tiny")
    backends = [manifest["plots"][str(i)]["settings"]["backend"] for i in range(3)]
    assert backends == ["animatediff", "t2v-zero", "animatediff"]
    assert [name for name, _ in calls] == ["StructureGuidedPipeline", "StructureGuidedZeroPipeline",
                                           "StructureGuidedPipeline"]
    sidecar = json.loads((out / "plots" / "01.mp4.json").read_text())
    assert sidecar["backend"] == "t2v-zero" and "motion_adapter" not in sidecar["components"]
    assert len(read_clip_frames(out / "story.mp4")) == 24
    calls.clear()
    again = render(story, workspace / "index", out, preset="tiny")
    assert calls == [] and all(p["reused"] for p in again["plots"].values())
    # The same story with render --backend t2v-zero: only plots without their own backend change.
    switched = render(story, workspace / "index", out, preset="tiny", backend="t2v-zero")
    assert [p["reused"] for p in switched["plots"].values()] == [False, True, False]


PLAN_STORY = """\
title: Plans
characters:
  "<teddy>": {pack: packs/teddy.safetensors, name: Teddy, word: bear}
defaults: {frames: 4, fps: 4, height: 64, width: 64, steps: 3, cfg: 7.5, tau: 0.5, seed: 0}
plots:
  - text: Teddy kicks a red ball.
    background: a green forest
    layout_strength: 0.5
    entities:
      - {name: Teddy, token: "<teddy>", boxes: {0: [0.05, 0.3, 0.45, 0.95], 3: [0.3, 0.3, 0.7, 0.95]}}
      - {name: ball, description: a red ball, boxes: {0: [0.6, 0.7, 0.75, 0.85], 3: [0.8, 0.6, 0.95, 0.75]}}
  - text: The ball rolls away.
    prompt: a red ball rolls away
    background: a green forest
    entities:
      - {name: ball, description: a red ball, boxes: {0: [0.4, 0.6, 0.6, 0.8]}}
  - text: Teddy waves.
    tau: 0.3
    layout_strength: 1
    entities:
      - {name: Teddy, token: "<teddy>", boxes: {0: [0.3, 0.2, 0.7, 0.95]}}
consistency:
  entities: {Teddy: [0, 2], ball: [0, 1]}
  backgrounds: {forest: [0, 1]}
"""


def test_render_a_planned_story_with_boxes_and_a_character_pack(workspace, tmp_path, sampler_calls):
    story, out = write_story(workspace, PLAN_STORY), tmp_path / "out"
    manifest = render(story, workspace / "index", out, preset="tiny")
    assert len(sampler_calls) == 3
    assert manifest["plan"] == {"consistency": {"entities": {"Teddy": [0, 2], "ball": [0, 1]},
                                                "backgrounds": {"forest": [0, 1]}}}
    plots = [manifest["plots"][str(i)] for i in range(3)]
    assert list(plots[0])[6:8] == ["timings", "layout"]  # a plot with entities records its layout after timings
    assert [p["settings"]["tau"] for p in plots] == [0.5, 0.5, 0.3]
    assert [p["layout"]["strength"] for p in plots] == [0.5, 0.4, 1.0]
    assert [p["layout"]["controlled_steps"] for p in plots] == [1, 1, 3]  # of 3 steps
    first = plots[0]
    assert first["settings"]["prompt"] == "<teddy> kicks a red ball, a green forest"
    assert first["layout"]["token_positions"] == [[1], [3, 4, 5]]  # "<teddy>", "a red ball"
    assert first["settings"]["layout"]["entities"][0]["boxes"] == {"0": [0.05, 0.3, 0.45, 0.95],
                                                                   "3": [0.3, 0.3, 0.7, 0.95]}
    assert first["layout"]["frame_boxes"]["Teddy"][2] == pytest.approx([0.2167, 0.3, 0.6167, 0.95], abs=1e-4)
    assert [c["token"] for c in first["settings"]["characters"]] == ["<teddy>"]
    assert plots[0]["clip"]["video"] == plots[1]["clip"]["video"]  # one background group, one source video
    sidecar = json.loads((out / "plots" / "00.mp4.json").read_text())
    assert sidecar["layout"]["entities"][1]["phrase"] == "a red ball" and sidecar["characters"][0]["token"] == "<teddy>"

    # The storyboard outlines every entity on the generated keyframes, one colour per entity (Teddy red,
    # the ball lime, in every row).
    rows = [np.asarray(Image.open(out / "plots" / f"{i:02d}.png").convert("RGB")) for i in range(3)]
    red, lime = ([int(np.all(row == colour, axis=-1).sum()) for row in rows] for colour in ((255, 0, 0), (0, 255, 0)))
    assert min(red[0], red[2], lime[0], lime[1]) > 30 and red[1] == lime[2] == 0
    assert (out / "storyboard.png").is_file()

    sampler_calls.clear()
    again = render(story, workspace / "index", out, preset="tiny")
    assert sampler_calls == [] and all(p["reused"] for p in again["plots"].values())


def test_a_manifest_whose_plot_index_differs_from_its_key_is_not_read(tmp_path):
    entry = {"index": 0, "output": "plots/00.mp4", "settings": {"frames": 8}, "clip": {"clip_id": 1, "score": None},
             "notes": [], "structure_forward_passes": 2, "timings": {}, "metrics": {}, "key": "k", "reused": False}
    manifest = {"version": 1, "title": None, "story_file": "s.yaml", "story_sha256": "0", "preset": "tiny",
                "models": {"preset": "tiny"}, "plan": {"consistency": {}}, "plots": {"0": entry},
                "story": {"output": "story.mp4", "storyboard": "storyboard.png", "frames": 8}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert read_manifest(path).to_dict() == manifest
    path.write_text(json.dumps({**manifest, "plots": {"0": {**entry, "index": 1}}}))
    with pytest.raises(UserError, match="is not a storyreel render manifest"):
        read_manifest(path)
    assert read_manifest(path, force=True) is None and read_manifest(tmp_path / "none.json") is None
