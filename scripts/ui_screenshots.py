"""One PNG per tab of `storyreel ui`, for docs/ui.md: the app on a tiny workspace, driven in Debian's chromium.

    python scripts/ui_screenshots.py [--out docs/ui] [--work DIR]

Builds the workspace the browser tests use (testing/workspace.py: 3 synthetic videos, the
demo story, two packs; tiny random models, so generated frames are noise-like), starts the app on a
free port, does one typical thing per tab (the Story tab: the planned plot's boxes over the clip pinned
from Search, and a bad field's error) and saves `index.png`, `search.png`, `story.png`,
`characters.png` and `render.png` (palette PNGs, each well under 300 KB).
"""

from __future__ import annotations

import argparse
import re
import socket
import tempfile
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/ui", help="folder for the PNGs (default docs/ui)")
    parser.add_argument("--work", help="workspace folder (default: a temporary folder)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from storyreel.testing.workspace import make_story_workspace
    from storyreel.ui.app import StoryreelApp, UIConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="storyreel-shots-"))
    data = make_story_workspace(work)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = StoryreelApp(UIConfig(index=data / "index", story=data / "story.yaml", out=data / "out",
                                roots=(data / "videos", data / "images"), preset="tiny", port=port,
                                temp_dir=data / "tmp"))
    page, url = app.launch(block=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            tab = browser.new_page(viewport={"width": 1200, "height": 820})
            tab.set_default_timeout(180_000)
            tab.goto(url)
            tab.locator("#index-status").get_by_text("clips").wait_for()

            def shot(name: str):
                tab.wait_for_timeout(600)  # let bars and images settle
                path = out / f"{name}.png"
                tab.screenshot(path=path, full_page=True)
                image = Image.open(path).convert("RGB")
                image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
                print(f"{path}  {path.stat().st_size // 1024} KB")

            tab.locator("#index-videos textarea, #index-videos input").first.fill(str(data / "videos"))
            shot("index")

            tab.get_by_role("tab", name="Search", exact=True).first.click()
            tab.locator("#search-text textarea, #search-text input").first.fill("the camera pans left")
            tab.locator("#search-go").click()
            tab.locator("#search-results img").first.wait_for()
            tab.locator("#search-results img").first.click()
            tab.locator("#search-picked").get_by_text("Clip").wait_for()
            tab.locator("#search-depth video").wait_for()
            shot("search")
            # Pin the picked clip to the planned plot 3, so the Story tab draws its boxes over that clip.
            tab.locator("#search-plot input").first.fill("3")
            tab.locator("#search-pin").click()
            tab.locator("#search-status").get_by_text("Plot 3 of").wait_for()

            tab.get_by_role("tab", name="Story", exact=True).first.click()
            editor = tab.locator("#story-yaml textarea")
            tab.get_by_role("tab", name="YAML").click()
            # The pin rewrote the file (write_story's indentation): keep whatever indent it has.
            editor.fill(re.sub(r"( *)motion: tilt-up\n", r"\1motion: tilt-up\n\1frames: 0\n", editor.input_value()))
            editor.blur()
            tab.locator("#story-save").click()
            tab.locator("#story-status").get_by_text("Not saved").wait_for()
            tab.locator("#story-layouts img").first.wait_for()
            shot("story")

            tab.get_by_role("tab", name="Characters", exact=True).first.click()
            tab.locator("#char-preview-path textarea, #char-preview-path input").first.fill(
                str(data / "packs" / "teddy.safetensors"))
            tab.locator("#char-preview").click()
            tab.locator("#char-gallery img").first.wait_for()
            shot("characters")

            tab.get_by_role("tab", name="Render", exact=True).first.click()
            tab.locator("#render-go").click()
            tab.locator("#render-status").get_by_text("Rendered 3 plots").wait_for()
            tab.locator("#render-storyboard img").wait_for()
            shot("render")
            browser.close()
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
