"""`storyreel ui`: a web page (Gradio) over the same Python API as the CLI, for creators who would rather
look than type. It sits above every package, as cli/models.py does, and holds no logic of its own.

    from storyreel.ui import StoryreelApp, UIConfig
    page, url = StoryreelApp(UIConfig(index="my_index", story="story.yaml", out="out")).launch(block=False)

Gradio is an optional dependency (`pip install 'storyreel[ui]'`), imported only when the page is built.
"""

from storyreel.ui.app import StoryreelApp, UIConfig
from storyreel.ui.paths import Roots

__all__ = ["StoryreelApp", "UIConfig", "Roots"]
