"""Contact sheet of search results: one row per hit, its rank, score, file and time range beside a strip
of keyframes, so a person can judge the results at a glance."""

from __future__ import annotations

from pathlib import Path

from storyreel.core.sheet import SheetRow, fit_text, paint_sheet
from storyreel.core.video import segment_centres
from storyreel.index.scan import display_path

FRAMES_PER_ROW = 4
THUMB_HEIGHT = 96
LABEL_WIDTH = 260
PAD = 6
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


def contact_sheet(index, hits, out_path, frames_per_row: int = FRAMES_PER_ROW,
                  thumb_height: int = THUMB_HEIGHT) -> Path:
    """Write a PNG contact sheet of `hits` (SearchHit list) read from `index`; returns its path."""
    rows = []
    for hit in hits:
        clip = hit.clip
        length = clip.end_frame - clip.start_frame
        frames = index.read_frames(clip.clip_id, segment_centres(0, length, max(1, min(frames_per_row, length))))
        lines = [
            f"#{hit.rank}  score {hit.score:.3f}  clip {clip.clip_id}",
            display_path(Path(clip.video).name),  # non-UTF-8 names drawn as \xNN
            f"{clip.start_s:.2f}-{clip.end_s:.2f} s  (frames {clip.start_frame}-{clip.end_frame})",
            f"motion {clip.motion} ({clip.motion_magnitude:.2f} px/frame)",
        ]
        rows.append(SheetRow([[frame] for frame in frames], [fit_text(line, LABEL_WIDTH - 2 * PAD) for line in lines]))
    return paint_sheet(out_path, rows or [SheetRow(caption=["no results"])], tile_height=thumb_height, gap=PAD,
                       caption_width=LABEL_WIDTH, background=BACKGROUND, ink=TEXT)
