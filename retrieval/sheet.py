"""Contact sheet of search results: one row per hit, its rank, score, file and time range beside a strip
of keyframes, so a person can judge the results at a glance."""

from __future__ import annotations

from pathlib import Path

from storyreel.core.files import atomic_write
from storyreel.core.video import segment_centres

FRAMES_PER_ROW = 4
THUMB_HEIGHT = 96
LABEL_WIDTH = 260
PAD = 6
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


def contact_sheet(index, hits, out_path, frames_per_row: int = FRAMES_PER_ROW, thumb_height: int = THUMB_HEIGHT) -> Path:
    """Write a PNG contact sheet of `hits` (SearchHit list) read from `index`; returns its path.

    Written to a temporary name beside `out_path`, then renamed, so a reader never sees half a file.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    rows = []
    for hit in hits:
        clip = hit.clip
        frames = index.read_frames(clip.clip_id, segment_centres(0, clip.end_frame - clip.start_frame, max(1, min(frames_per_row, clip.end_frame - clip.start_frame))))
        thumbs = [Image.fromarray(f).resize((max(1, round(f.shape[1] * thumb_height / f.shape[0])), thumb_height)) for f in frames]
        strip_width = sum(t.width for t in thumbs) + PAD * (len(thumbs) - 1)
        row = Image.new("RGB", (LABEL_WIDTH + strip_width, thumb_height), BACKGROUND)
        x = LABEL_WIDTH
        for thumb in thumbs:
            row.paste(thumb, (x, 0))
            x += thumb.width + PAD
        lines = [
            f"#{hit.rank}  score {hit.score:.3f}  clip {clip.clip_id}",
            Path(clip.video).name,
            f"{clip.start_s:.2f}-{clip.end_s:.2f} s  (frames {clip.start_frame}-{clip.end_frame})",
            f"motion {clip.motion} ({clip.motion_magnitude:.2f} px/frame)",
        ]
        draw = ImageDraw.Draw(row)
        for n, line in enumerate(lines):
            draw.text((PAD, PAD + n * 16), _fit(line, LABEL_WIDTH - 2 * PAD, draw, font), fill=TEXT, font=font)
        rows.append(row)
    if not rows:
        rows = [Image.new("RGB", (LABEL_WIDTH, thumb_height // 2), BACKGROUND)]
        ImageDraw.Draw(rows[0]).text((PAD, PAD), "no results", fill=TEXT, font=font)
    sheet = Image.new("RGB", (max(r.width for r in rows) + 2 * PAD, sum(r.height + PAD for r in rows) + PAD), BACKGROUND)
    y = PAD
    for row in rows:
        sheet.paste(row, (PAD, y))
        y += row.height + PAD
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, lambda tmp: sheet.save(tmp, format="PNG"))


def _fit(text: str, width: int, draw, font) -> str:
    """`text`, shortened from the left with '...' until it fits `width` pixels (file names keep their end)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text
