"""Contact sheets: rows of thumbnails painted into one PNG (search results, depth sheets, storyboards).

A sheet is rows, top to bottom. A row is an optional caption, then panels left to right; a panel is
tiles side by side. `gap` pixels frame the sheet and separate rows and panels. The caption is a column
`caption_width` pixels wide left of the panels (its text inset by `gap`), or, without `caption_width`,
lines above them. A row may outline labelled boxes on its tiles (storyboards draw each entity's box
over the keyframes): one colour per label of the row. The PNG is written atomically
(core/files.py), its folder created if needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.files import atomic_write

LINE_HEIGHT = 16  # caption line pitch; PIL's default font is about 11 px tall
BOX_COLOURS = ("red", "lime", "cyan", "yellow", "magenta", "orange")  # outline colour of a row's n-th label


@dataclass
class SheetRow:
    panels: Sequence[Sequence[np.ndarray]] = ()  # uint8 (H, W, 3) tiles, grouped into panels
    caption: Sequence[str] = ()                   # text lines
    # Per panel, per tile: ((x0, y0, x1, y1) as fractions of the tile, label[, colour]) boxes to outline
    # on it; without a colour, the row's n-th label gets BOX_COLOURS[n].
    boxes: Sequence[Sequence[Sequence[tuple]]] = ()


def paint_sheet(path, rows: Sequence[SheetRow], *, tile_height: int | None = None, gap: int = 0,
                caption_width: int | None = None, background="black", ink="white") -> Path:
    """Paint `rows` into the PNG `path` and return its path; tiles are scaled to `tile_height` (aspect
    kept) when it is given, else pasted as they are."""
    from PIL import Image, ImageDraw

    laid = [_lay_out(row, tile_height, gap, caption_width) for row in rows]
    width = max((w for w, _, _ in laid), default=0) + 2 * gap
    height = sum(h + gap for _, h, _ in laid) + gap
    sheet = Image.new("RGB", (max(1, width), max(1, height)), background)
    draw = ImageDraw.Draw(sheet)
    y = gap
    for row, (_, row_height, panels) in zip(rows, laid):
        beside = caption_width is not None
        text_x, text_y = (2 * gap, y + gap) if beside else (gap, y)
        for n, line in enumerate(row.caption):
            draw.text((text_x, text_y + n * LINE_HEIGHT), line, fill=ink)
        x, tiles_y = (gap + caption_width, y) if beside else (gap, y + LINE_HEIGHT * len(row.caption))
        labels = list(dict.fromkeys(box[1] for panel in row.boxes for tile in panel for box in tile))
        for p, panel in enumerate(panels):
            for t, tile in enumerate(panel):
                sheet.paste(tile, (x, tiles_y))
                tile_boxes = row.boxes[p][t] if p < len(row.boxes) and t < len(row.boxes[p]) else ()
                for box, label, *colour in tile_boxes:
                    colour = colour[0] if colour else BOX_COLOURS[labels.index(label) % len(BOX_COLOURS)]
                    _outline(draw, box, label, colour, (x, tiles_y, tile.width, tile.height))
                x += tile.width
            x += gap
        y += row_height + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def _outline(draw, box, label: str, colour: str, tile: tuple[int, int, int, int]) -> None:
    """A box (fractions of the tile) outlined in `colour` with its label inside its top-left corner."""
    left, top, width, height = tile
    x0, y0 = left + round(box[0] * width), top + round(box[1] * height)
    x1, y1 = left + round(box[2] * width) - 1, top + round(box[3] * height) - 1
    draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=colour, width=2)
    draw.text((x0 + 3, y0 + 2), label, fill=colour)


def fit_text(text: str, width: int) -> str:
    """`text`, shortened from the left with '...' until it fits `width` pixels of a caption (file names
    keep their end)."""
    from PIL import ImageFont

    font = ImageFont.load_default()  # the font ImageDraw.text paints captions with
    if font.getlength(text) <= width:
        return text
    while len(text) > 1 and font.getlength("..." + text) > width:
        text = text[1:]
    return "..." + text


def _lay_out(row: SheetRow, tile_height: int | None, gap: int, caption_width: int | None):
    """(width, height, panels of PIL tiles) of one row, without the sheet's outer gap."""
    panels = [[_tile(frame, tile_height) for frame in panel] for panel in row.panels]
    tiles_width = sum(tile.width for panel in panels for tile in panel) + gap * max(0, len(panels) - 1)
    tiles_height = max((tile.height for panel in panels for tile in panel), default=0)
    caption_height = LINE_HEIGHT * len(row.caption)
    if caption_width is None:
        return tiles_width, caption_height + tiles_height, panels
    return caption_width + tiles_width, max(tiles_height, caption_height + 2 * gap if row.caption else 0), panels


def _tile(frame: np.ndarray, height: int | None):
    from PIL import Image

    image = Image.fromarray(np.asarray(frame))
    if height is None or image.height == height:
        return image
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR)
