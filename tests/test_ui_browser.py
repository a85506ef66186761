"""`storyreel ui` in a real browser: Playwright drives Debian's chromium against the app on a free port.

One app and one browser serve every test (module fixtures): a tiny index of 3 synthetic videos,
the demo story (its last plot with two entity boxes) with two character packs trained for 2 steps,
the `tiny` preset.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from storyreel.core.errors import UserError
from storyreel.testing.workspace import WORKSPACE_STORY, make_story_workspace
from storyreel.ui.app import PageProgress, StoryreelApp, UIConfig
from storyreel.ui.paths import Roots

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 120_000  # a render of 3 tiny plots on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_story_workspace(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def app(data):
    config = UIConfig(index=data / "index", story=data / "story.yaml", out=data / "out", roots=(data / "videos",),
                      preset="tiny", port=free_port(), temp_dir=data / "tmp")
    ui = StoryreelApp(config)
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        page, url = ui.launch(block=False)
    yield ui, url, said.getvalue()
    page.close()


@pytest.fixture(scope="module")
def page(app):
    from playwright import sync_api
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(WAIT_MS)
        tab.goto(app[1])
        tab.wait_for_selector("#index-status")
        yield tab
        browser.close()


def tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).first.click()


def fill(page, elem_id: str, text: str):
    field = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    field.fill(text)


def status(page, elem_id: str, contains: str) -> str:
    locator = page.locator(f"#{elem_id}")
    locator.get_by_text(contains).first.wait_for()
    return locator.inner_text().strip()


def search(page, text: str, motion: str) -> list[str]:
    from playwright.sync_api import expect

    fill(page, "search-text", text)
    page.locator("#search-motion input").fill(motion)
    page.locator("#search-motion input").press("Enter")
    page.locator("#search-go").click()
    shown = status(page, "search-status", f"for '{text}'" + ("." if motion == "any motion" else f" (motion {motion})"))
    count = int(shown.split()[0])
    captions = page.locator("#search-results .caption-label")
    expect(captions).to_have_count(count)
    return [captions.nth(i).inner_text() for i in range(count)]


def test_search_shows_k_thumbnails_plays_a_clip_and_filters_by_motion(page, data):
    from storyreel import index

    with index.open_index(data / "index") as opened:
        motions = [c.motion for c in opened.clips()]
    tab(page, "Search")
    fill(page, "search-k", "4")
    captions = search(page, "the camera pans left", "any motion")
    assert len(captions) == 4 == page.locator("#search-results img").count()
    assert [c.split()[0] for c in captions] == ["#1", "#2", "#3", "#4"]

    page.locator("#search-results img").first.click()
    clip_id = int(captions[0].split()[2])
    status(page, "search-picked", f"Clip {clip_id}:")
    assert page.locator("#search-clip video").get_attribute("src").endswith(".mp4")
    assert page.locator("#search-depth video").get_attribute("src").endswith("-depth.mp4")

    label = min(set(motions), key=motions.count)  # the rarest label narrows the most
    captions = search(page, "the camera pans left", label)
    assert len(captions) == min(4, motions.count(label)) < 4
    assert all(f" {label} " in c for c in captions)
    search(page, "the camera pans left", "any motion")  # leave the filter off for the other tests

    # "Use for plot N" pins the picked clip in the story file.
    fill(page, "search-plot", "2")
    page.locator("#search-pin").click()
    status(page, "search-status", f"Plot 2 of story.yaml now uses clip {clip_id}.")
    from storyreel.story import load_story

    assert [p.clip for p in load_story(data / "story.yaml").plots] == [None, clip_id, None]

    # A query image, uploaded into the app's temporary folder.
    page.locator("#search-image input[type=file]").set_input_files(str(data / "images" / "teddy" / "0.png"))
    page.locator("#search-image img").wait_for()
    page.locator("#search-go").click()
    status(page, "search-status", "4 clips for the image.")
    assert page.locator("#search-results img").count() == 4
    assert any((data / "tmp").rglob("0.png"))


def layout_pixels(ui, story: Path, *points) -> tuple:
    """RGB of the handler's layout picture at (x, y) fractions of its first row's first keyframe."""
    from PIL import Image

    from storyreel.core.sheet import LINE_HEIGHT
    from storyreel.story.storyboard import LAYOUT_GAP, LAYOUT_TILE_HEIGHT

    picture = Image.open(ui.story_layouts(str(story))).convert("RGB")
    return tuple(picture.getpixel((LAYOUT_GAP + round(x * LAYOUT_TILE_HEIGHT),  # below the plot's caption line
                                   LAYOUT_GAP + LINE_HEIGHT + round(y * LAYOUT_TILE_HEIGHT))) for x, y in points)


def test_story_edit_saves_and_a_bad_field_shows_its_line_and_writes_nothing(page, app, data):
    from playwright.sync_api import expect

    story = data / "story.yaml"
    tab(page, "Story")
    page.get_by_role("tab", name="YAML").click()
    editor = page.locator("#story-yaml textarea")
    assert "Teddy walks through the forest." in editor.input_value()
    picture = page.locator("#story-layouts img")
    shown_before = picture.get_attribute("src")  # drawn when the page loaded
    editor.fill(WORKSPACE_STORY.replace("Teddy walks through the forest.", "Teddy runs through the forest."))
    editor.blur()
    page.locator("#story-save").click()
    status(page, "story-status", "Saved story.yaml: 3 plots")
    assert "Teddy runs through the forest." in story.read_text()
    # The planned plot's entity boxes over its keyframes, redrawn on save (no clip pinned or rendered
    # yet: grey frames). Frame 0: Teddy [0.1, 0.3, 0.45, 0.9] in red, Robo [0.6, 0.2, 0.9, 0.9] in lime.
    expect(picture).not_to_have_attribute("src", shown_before)
    assert picture.get_attribute("src").endswith("layout.png")
    assert layout_pixels(app[0], story, (0.1, 0.6), (0.25, 0.6), (0.6, 0.6), (0.75, 0.6)) == (
        (255, 0, 0), (128, 128, 128), (0, 255, 0), (128, 128, 128))

    saved = story.read_bytes()
    bad = story.read_text().replace("  - text: Robo looks up at the sky.\n",
                                    "  - text: Robo looks up at the sky.\n    frames: 0\n")
    editor.fill(bad)
    editor.blur()
    page.locator("#story-save").click()
    line = bad.splitlines().index("    frames: 0") + 1
    shown = status(page, "story-status", "Not saved")
    assert f"story.yaml:{line}: plots[1].frames: must be an integer >= 1, got 0" in shown
    assert story.read_bytes() == saved
    editor.fill(saved.decode())  # the page shows what the file holds again


def test_render_completes_shows_the_story_and_a_rerun_keeps_every_plot(page, app, data):
    tab(page, "Render")
    page.locator("#render-go").click()
    # Another browser tab searches while the render runs: long work does not block the page.
    other = page.context.browser.new_page()
    other.goto(app[1])
    tab(other, "Search")
    assert search(other, "a zoom in", "any motion")
    assert "Rendered" not in page.locator("#render-status").inner_text()
    other.close()
    page.get_by_text(re.compile(r"render: plot=\d/3 stage=")).first.wait_for()  # the bar names the plot and stage
    status(page, "render-status", "Rendered 3 plots: 0 kept, 3 rendered")
    assert (data / "out" / "render" / "story.mp4").is_file()
    assert page.locator("#render-video video").get_attribute("src").endswith("story.mp4")
    assert page.locator("#render-storyboard img").get_attribute("src").endswith("storyboard.png")

    page.locator("#render-go").click()
    status(page, "render-status", "Rendered 3 plots: 3 kept, 0 rendered")
    # Once rendered, the layout picture draws the boxes over the retrieved clip's keyframe, not grey.
    edge, inside = layout_pixels(app[0], data / "story.yaml", (0.1, 0.6), (0.25, 0.6))
    assert edge == (255, 0, 0) and inside != (128, 128, 128)


def test_cancel_stops_a_render_between_steps_and_keeps_finished_plots(page, data):
    import json

    story = data / "story.yaml"
    story.write_text(story.read_text().replace("seed: 0}", "seed: 1}"))  # every plot changes
    tab(page, "Render")
    page.locator("#render-go").click()
    manifest = data / "out" / "render" / "manifest.json"
    deadline = time.monotonic() + 120
    while json.loads(manifest.read_text())["plots"]["0"]["settings"]["seed"] != 1:  # until plot 1 is new
        assert time.monotonic() < deadline, page.locator("#render-status").inner_text()
        time.sleep(0.05)
    page.locator("#render-cancel").click()
    shown = status(page, "render-status", "Render cancelled")
    kept = json.loads(manifest.read_text())["plots"]
    assert list(kept) in (["0"], ["0", "1"])  # plot 1, and plot 2 if its last step had begun
    assert shown.startswith(f"Render cancelled: {len(kept)} finished plots are kept")


def test_index_tab_builds_and_bad_paths_show_one_line(page, data):
    from playwright.sync_api import expect

    tab(page, "Index")
    fill(page, "index-videos", str(data / "videos"))
    fill(page, "index-dir", str(data / "out" / "index2"))
    page.locator("#index-build").click()
    status(page, "index-status", "Indexed 3 videos: 3 new, 0 changed, 0 unchanged, 0 removed; 9 clips, 0 files failed")
    expect(page.locator("#index-stats")).to_contain_text(str(data / "out" / "index2"))  # its stats table

    fill(page, "index-videos", str(data / "videos" / "missing"))
    page.locator("#index-build").click()
    shown = status(page, "index-status", "Error:")
    assert shown == f"Error: video folder {data / 'videos' / 'missing'} does not exist or is not a folder"

    fill(page, "index-videos", "/etc")
    page.locator("#index-build").click()
    shown = status(page, "index-status", "outside the folders")
    assert shown.startswith("Error: video folder /etc is outside the folders this app may use (")
    assert "\n" not in shown


def test_roots_refuse_paths_outside_and_progress_reads_the_library_fields(tmp_path):
    roots = Roots([tmp_path / "a", tmp_path / "b"])
    assert roots.resolve("x/y.yaml", "story file") == (tmp_path / "a" / "x" / "y.yaml").resolve()
    assert roots.resolve(str(tmp_path / "b"), "index folder") == (tmp_path / "b").resolve()
    for outside in ("/etc", str(tmp_path / "a" / ".." / "c"), "../c"):
        with pytest.raises(UserError, match="outside the folders"):
            roots.resolve(outside, "video folder")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "link").symlink_to("/etc")
    with pytest.raises(UserError, match="outside the folders"):
        roots.resolve("link/passwd", "story file")

    shown = []
    build = PageProgress(lambda fraction, desc: shown.append((fraction, desc)), "index")
    build.update(files=3, of=4, clips=40)  # 3 files done
    build.child("frames").update(frames=50, of=100)  # half of the fourth
    assert shown == [(0.75, "index: files=3/4 clips=40"), (0.875, "index: files=3/4 clips=40 frames=50/100")]

    shown.clear()
    cancel = threading.Event()
    render = PageProgress(lambda fraction, desc: shown.append((fraction, desc)), "render", cancel,
                          unit_in_progress=True)
    steps = render.child("steps")
    render.update(force=True, plot=2, of=4, stage="generate")  # plot 2 under way
    steps.update(steps=1, of=2)
    render.update(force=True, plot=2, of=4, stage="write")  # no step named: the bar stays
    assert shown == [(0.25, "render: plot=2/4 stage=generate"), (0.375, "render: plot=2/4 stage=generate steps=1/2"),
                     (0.375, "render: plot=2/4 stage=write")]
    cancel.set()
    with pytest.raises(UserError, match="render cancelled"):
        steps.update(steps=2, of=2)


def test_the_app_binds_localhost_and_says_so(app):
    ui, url, said = app
    assert url == f"http://127.0.0.1:{ui.config.port}"
    assert said.startswith(f"storyreel ui: serving on {url} (bound to 127.0.0.1: only this machine can open it;")
    with socket.create_connection(("127.0.0.1", ui.config.port)):
        pass  # listening on the loopback address


def test_an_upload_over_the_limit_is_refused(app, tmp_path):
    ui = app[0]
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (ui.max_upload_bytes + 1))
    with pytest.raises(UserError, match="uploads are limited to 20 MB"):
        ui.check_upload(big)


def test_story_tables_and_plan_write_what_the_yaml_editor_would(app, data, tmp_path):
    """The Table and Plan handlers, without the browser: rows become story fields, validated the same way."""
    from storyreel.story import load_story

    ui = app[0]
    path = data / "out" / "table.yaml"
    characters = [["<teddy>", "Teddy", "bear", str(data / "packs" / "teddy.safetensors"), ""]]
    plots = [["Teddy naps.", "static", "", "8", "", "", "", "", ""],
             ["Teddy wakes.", "", "3", "", "0.4", "", "", "", ""]]
    shown, text, _, rows = ui.save_tables(str(path), characters, plots)
    assert shown == "Saved table.yaml: 2 plots."
    story = load_story(path)
    assert [(p.text, p.motion, p.frames, p.clip, p.tau) for p in story.plots] == [
        ("Teddy naps.", "static", 8, None, None), ("Teddy wakes.", None, None, 3, 0.4)]
    assert rows[1][:3] == ["Teddy wakes.", "", 3]
    saved = path.read_bytes()
    plots[0][3] = "0"
    shown, text, _, _ = ui.save_tables(str(path), characters, plots)
    assert shown.startswith("**Not saved:** ") and "plots[0].frames: must be an integer >= 1, got 0" in shown
    assert path.read_bytes() == saved and text is None

    shown, text = ui.plan(str(path), "Teddy walks home. Then Teddy sleeps.", "Teddy=<teddy>", "", "")
    assert shown == "Planned 2 plots: check them, then Save."
    assert "prompt: <teddy> walks home." in text and path.read_bytes() == saved  # not saved until Save


def test_ui_command_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    from storyreel.cli import main

    assert main(["ui", "--index", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"storyreel: error: --index {tmp_path / 'nope'} does not exist or is not a folder\n"


def test_characters_tab_trains_a_pack_with_progress_and_lists_it(app, data):
    """The Train handler as the page calls it (uploads are temp files; the bar is the page's gr.Progress)."""
    ui = app[0]
    shown = []
    out = data / "out" / "packs" / "cat.safetensors"
    status, rows = ui.train([str(data / "images" / "teddy" / "0.png")], "<cat>", "cat", 2, str(out),
                            lambda fraction, desc: shown.append((fraction, desc)))
    assert status == f"Trained &lt;cat> for 2 steps from 1 images into {out}."
    assert [fraction for fraction, _ in shown][-1] == 1.0 and shown[-1][1].startswith("train: step=2/2")
    assert [str(out), "<cat>", "timeinv", "1 images"] in rows
    assert ui.preview_pack(str(out))[0] == "cat.safetensors: token &lt;cat>, 1 concept images."
    with pytest.raises(UserError, match="outside the folders"):
        ui.train([str(data / "images" / "teddy" / "0.png")], "<cat>", "cat", 2, "/tmp/cat.safetensors")
