"""A small story workspace for the web app's browser tests and screenshots (tests/test_ui_browser.py,
scripts/ui_screenshots.py): 3 synthetic videos indexed with the tiny preset, the demo story and its two
character packs, trained for a couple of steps; its last plot places Teddy and Robo with entity boxes
(WORKSPACE_STORY). Tiny models are random: it exercises the plumbing."""

from __future__ import annotations

from pathlib import Path

from storyreel.story.demo import STORY

# The demo story, its meeting plot planned: Teddy on the left walks right, Robo stands on the right.
MEETING_ENTITIES = """\
    entities:
      - {name: Teddy, token: "<teddy>", boxes: {0: [0.1, 0.3, 0.45, 0.9], 7: [0.25, 0.3, 0.6, 0.9]}}
      - {name: Robo, token: "<robo>", boxes: {0: [0.6, 0.2, 0.9, 0.9]}}
"""
WORKSPACE_STORY = STORY.replace("    motion: zoom-in\n", "    motion: zoom-in\n" + MEETING_ENTITIES)


def make_story_workspace(root, pack_steps: int = 2) -> Path:
    """`root`/videos, /index, /packs/{teddy,robo}.safetensors, /story.yaml (story/demo.py's)."""
    from storyreel import index
    from storyreel.story.demo import CHARACTERS, write_character_images
    from storyreel.synthetic import make_corpus
    from storyreel.training.train import TrainSettings, train_character

    root = Path(root)
    make_corpus(root / "videos", num_videos=3, shots_per_video=3, shot_seconds=1.5, size=(128, 72), fps=12)
    index.build(root / "videos", root / "index", index.BuildSettings(preset="tiny"))
    (root / "packs").mkdir(parents=True, exist_ok=True)
    for name, token, word, colour, shape in CHARACTERS:
        write_character_images(root / "images" / name.lower(), colour, shape, count=2)
        train_character(root / "images" / name.lower(), root / "packs" / f"{name.lower()}.safetensors",
                        TrainSettings(token=token, init_word=word, steps=pack_steps, size=32, frames=2), preset="tiny")
    (root / "story.yaml").write_text(WORKSPACE_STORY)
    return root
