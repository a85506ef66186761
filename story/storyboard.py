"""Pictures of a story: storyboard.png (one row per rendered plot) and the plan's layout picture.

    write_storyboard_row(row_png(video), text, source, depth, generated, boxes)   # per plot, plots/NN.png
    assemble_storyboard(rows, out_dir / "storyboard.png")                          # the rows stacked
    paint_layouts(story, "layout.png", index=index, render_dir=out_dir)           # the UI's Story tab
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.core.sheet import BOX_COLOURS, SheetRow, paint_sheet
from storyreel.core.video import spread_indices
from storyreel.story.clips import clip_exists
from storyreel.story.format import Story, plot_settings
from storyreel.story.manifest import MANIFEST_FILE, read_manifest

KEYFRAMES = 3          # keyframes per storyboard panel
PANEL_HEIGHT = 96      # storyboard row height in pixels
LAYOUT_TILE_HEIGHT = 160  # keyframe height in a plot's layout picture (paint_layouts), pixels
LAYOUT_GAP = 8         # white space around and between a layout picture's keyframes, pixels


def keyframe_indices(length: int) -> list[int]:
    """The KEYFRAMES frame indices (fewer for shorter clips) spread over `length` frames."""
    return np.unique(spread_indices(length, min(KEYFRAMES, length))).tolist()


def row_png(video: Path) -> Path:
    """A plot's storyboard row, next to its video: plots/NN.png."""
    return video.with_suffix(".png")


def write_storyboard_row(path: Path, text: str, source: np.ndarray, depth_frames: np.ndarray,
                         generated: np.ndarray, boxes=()) -> None:
    """One storyboard row: the plot text above source keyframes | depth | generated keyframes; `boxes`:
    per generated keyframe, the (box, entity name) pairs outlined on it."""
    paint_sheet(path, [SheetRow([source, depth_frames, generated], [text[:160]], boxes=[(), (), list(boxes)])],
                tile_height=PANEL_HEIGHT, gap=8, background="white", ink="black")


def assemble_storyboard(rows: list[Path], out: Path) -> None:
    """Stack the plots' rows into storyboard.png (one row per plot)."""
    from storyreel.core.images import read_rgb

    paint_sheet(out, [SheetRow([[read_rgb(p, what="storyboard row")]]) for p in rows], background="white")


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

    from storyreel.generation.layout import interpolate_boxes

    colours = entity_colours(story)
    # A manifest that is not one just means no retrieved clips here (force: ignored, not refused).
    rendered = read_manifest(Path(render_dir) / MANIFEST_FILE, force=True) if render_dir else None
    retrieved = {p.index: p.clip.get("clip_id") for p in rendered.plots} if rendered else {}
    rows = []
    for i, plot in enumerate(story.plots):
        if not plot.entities:
            continue
        settings = plot_settings(story, i, preset)
        size = (settings.width, settings.height)
        clip_id = plot.clip if plot.clip is not None else retrieved.get(i)
        if index is not None and isinstance(clip_id, int) and clip_exists(index, clip_id):
            clip = index.clip(clip_id)
            images = [np.asarray(ImageOps.fit(Image.fromarray(frame), size, Image.BILINEAR))
                      for frame in index.read_frames(clip_id, keyframe_indices(clip.end_frame - clip.start_frame))]
            source = f"clip {clip_id}"
        else:
            images = [np.full((size[1], size[0], 3), 128, np.uint8)] * KEYFRAMES
            source = "no clip yet"
        keyframes = keyframe_indices(settings.frames)[:len(images)]
        boxes = [(e.name, interpolate_boxes(e.boxes, settings.frames)) for e in plot.entities]
        tiles = [[(b[f], name, colours[name]) for name, b in boxes] for f in keyframes]
        # One panel per keyframe, so the gap separates grey keyframes too.
        rows.append(SheetRow([[image] for image in images[:len(keyframes)]],
                             [f"plot {i + 1} ({source}, frames {', '.join(map(str, keyframes))}): {plot.text}"[:160]],
                             boxes=[[t] for t in tiles]))
    if not rows:
        return None
    return paint_sheet(path, rows, tile_height=LAYOUT_TILE_HEIGHT, gap=LAYOUT_GAP, background="white", ink="black")
