"""`storyreel ui` in a real browser: Playwright drives Debian's chromium against the app on a free port.

One app and one browser serve every test (module fixtures): a tiny index of 3 synthetic videos,
the demo story with two character packs trained for 2 steps, the `tiny` preset.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from storyreel.core.errors import UserError
from storyreel.generation.story.demo import STORY
from storyreel.testing.workspace import make_story_workspace
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
    page, url = ui.launch(block=False, quiet=True)
    yield ui, url
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


def test_story_edit_saves_and_a_bad_field_shows_its_line_and_writes_nothing(page, data):
    story = data / "story.yaml"
    tab(page, "Story")
    page.get_by_role("tab", name="YAML").click()
    editor = page.locator("#story-yaml textarea")
    assert "Teddy walks through the forest." in editor.input_value()
    editor.fill(STORY.replace("Teddy walks through the forest.", "Teddy runs through the forest."))
    editor.blur()
    page.locator("#story-save").click()
    status(page, "story-status", "Saved story.yaml: 3 plots")
    assert "Teddy runs through the forest." in story.read_text()

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
    page.get_by_text("render: plot=3/3 stage=step").first.wait_for()  # the bar names the plot and the step
    status(page, "render-status", "Rendered 3 plots: 0 kept, 3 rendered")
    assert (data / "out" / "render" / "story.mp4").is_file()
    assert page.locator("#render-video video").get_attribute("src").endswith("story.mp4")
    assert page.locator("#render-storyboard img").get_attribute("src").endswith("storyboard.png")

    page.locator("#render-go").click()
    status(page, "render-status", "Rendered 3 plots: 3 kept, 0 rendered")


def test_cancel_stops_a_render_between_steps_and_keeps_finished_plots(page, data):
    import json

    story = data / "story.yaml"
    story.write_text(story.read_text().replace("seed: 0}", "seed: 1}"))  # every plot changes
    tab(page, "Render")
    page.locator("#render-go").click()
    page.get_by_text("render: plot=2/3 stage=step").first.wait_for()
    page.locator("#render-cancel").click()
    shown = status(page, "render-status", "Render cancelled")
    kept = json.loads((data / "out" / "render" / "manifest.json").read_text())["plots"]
    assert list(kept) in (["0"], ["0", "1"])  # plot 1, and plot 2 if its last step had begun
    assert shown.startswith(f"Render cancelled: {len(kept)} finished plots are kept")
    assert page.locator("#render-plots tbody tr").count() == len(kept)


def test_bad_paths_show_one_line(page, data):
    tab(page, "Index")
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

    assert PageProgress.fraction({"files": "3/4"}) == 0.75
    assert PageProgress.fraction({"plot": "2/4", "stage": "step 1/2"}) == 0.375
    assert PageProgress.fraction({"plot": "3/4", "stage": "unchanged, kept"}) == 0.5
    assert PageProgress.fraction({"stage": "loading models"}) is None


def test_an_upload_over_the_limit_is_refused(app, tmp_path):
    ui = app[0]
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (ui.max_upload_bytes + 1))
    with pytest.raises(UserError, match="uploads are limited to 20 MB"):
        ui.check_upload(big)
