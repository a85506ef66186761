"""Still images: the one loader every package uses (EXIF rotation applied, one-line errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def read_rgb(path, what: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) RGB of an image file, upright as its EXIF orientation says (phone photos).

    `what` names the file's role in the error message (e.g. "--image").
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file")
    try:
        with Image.open(path) as image:
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))  # a writable copy
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{what} {path}: not a readable image ({type(err).__name__}); "
                        f"give one of {', '.join(IMAGE_SUFFIXES)}") from None
