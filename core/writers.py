"""Write frames: mp4 (H.264), gif or a folder of PNGs, plus a JSON sidecar. `write_video` is the one
way frames reach disk (generated clips, stories, depth videos); `read_video` (core/video.py)
reads every format back.

Every write is atomic — the file is written under a temporary name in the destination folder, then
moved into place with `os.replace` — so a failure never leaves a partial clip behind. The sidecar
(`<out>.json`) holds every setting, the seed and the component ids: enough to regenerate the frames.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.core.files import _umask, atomic_write, check_output_path, sidecar_path, temp_dir, write_text_atomic
from storyreel.core.video import write_mp4

FORMATS = {".mp4": "mp4", ".gif": "gif", "": "png"}  # a path without a suffix is a folder of PNG frames


def output_format(path) -> str:
    """'mp4', 'gif' or 'png' (a folder) from the output path, or a one-line UserError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"output {path}: unknown format {suffix!r}; use .mp4, .gif or a folder name for PNG frames")
    return FORMATS[suffix]


def check_writable(path, flag: str = "--out") -> None:
    """Fail early, before minutes of sampling, if `path` cannot be written."""
    path = Path(path)
    kind = output_format(path)
    check_output_path(path, flag, folder=kind == "png")


def write_video(frames: np.ndarray, path, *, fps: float = 8.0, metadata: dict | None = None, crf: int = 18) -> Path:
    """Write (F, H, W, 3) uint8 `frames` to `path` (.mp4, .gif or a PNG folder) and `<path>.json`.

    `crf` is the mp4's H.264 quality (lower is closer to the frames; 18 looks lossless, depth uses 12).
    """
    path = Path(path)
    check_writable(path)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    kind = output_format(path)
    try:
        if kind == "png":
            _write_png_folder(frames, path)
        else:
            atomic_write(path, lambda tmp: _write_animation(frames, tmp, kind, fps, crf))
        if metadata is not None:
            sidecar = {**metadata, "output": str(path), "format": kind, "fps": fps, "frames": int(frames.shape[0]),
                       "height": int(frames.shape[1]), "width": int(frames.shape[2])}
            try:
                write_text_atomic(sidecar_path(path), json.dumps(sidecar, indent=2) + "\n")
            except OSError:  # a clip without its sidecar is a partial output: take the clip back
                shutil.rmtree(path, ignore_errors=True) if kind == "png" else path.unlink(missing_ok=True)
                raise
    except OSError as err:
        raise UserError(f"output {path}: could not write ({err.strerror or err}); choose another --out") from err
    return path


def _write_animation(frames: np.ndarray, tmp: Path, kind: str, fps: float, crf: int) -> None:
    import imageio.v2 as imageio

    if kind == "gif":
        imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        return
    write_mp4(tmp, frames, fps=fps, crf=crf)


def _write_png_folder(frames: np.ndarray, folder: Path) -> None:
    """PNG frames into a temp folder, then swapped in as a whole (an existing folder is replaced)."""
    from PIL import Image

    if folder.is_dir() and any(not p.name.startswith("frame_") or p.suffix != ".png" for p in folder.iterdir()):
        raise UserError(f"output {folder} is a folder with other files in it; choose a new folder for PNG frames")
    tmp = temp_dir(folder)
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{i:05d}.png")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; publish it as mkdir would
        if folder.exists():  # only earlier frames live there (checked above)
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
