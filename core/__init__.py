"""What every storyreel stage shares: errors, atomic files, progress lines, Hugging Face cache lookup,
and image and video I/O.

    from storyreel.core import read_video, write_video, paint_sheet, SheetRow

    frames = read_video("clip.mp4")                  # also a .gif or a folder of PNG frames
    write_video(frames, "copy.gif", fps=8, metadata={"from": "clip.mp4"})   # + copy.gif.json
    paint_sheet("sheet.png", [SheetRow([frames[:4]], ["first four frames"])], tile_height=96)

One of each: `read_video` / `probe` / `read_frames` / `iter_frames` decode every video (video.py),
`read_rgb` loads every still image (images.py), `write_video` writes every video (writers.py),
`paint_sheet` paints every contact sheet (sheet.py), `atomic_write` publishes every file (files.py).
Names load on first use, so `import storyreel.core` pulls in no numpy, torch or decord.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "errors": ["UserError", "UsageError", "MissingWeightsError"],
    "files": ["atomic_write", "write_text_atomic", "sidecar_path", "check_output_path"],
    "progress": ["Progress"],
    "hub": ["hf_cache_dir", "hf_file", "hf_folder"],
    "images": ["read_rgb", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS"],
    "video": ["BadVideo", "VideoInfo", "probe", "iter_frames", "read_frames", "read_video", "write_mp4",
              "spread_indices", "segment_centres", "scaled_size"],
    "writers": ["write_video", "check_writable", "output_format"],
    "sheet": ["paint_sheet", "SheetRow", "fit_text"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
