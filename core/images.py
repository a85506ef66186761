"""Still images: the one loader every package uses (EXIF rotation applied, size limit, one-line errors)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Largest image decoded: 8192x8192 (67 megapixels, 200 MB as RGB). Its size is read from the header
# first, so a "decompression bomb" (a small file that claims a huge image) is refused before any
# decoding; this is also below PIL's own bomb warning (89 megapixels).
MAX_IMAGE_PIXELS = 8192 * 8192


def check_image_size(width: int, height: int, path, what: str = "image") -> None:
    """A one-line UserError for an image larger than MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(f"{what} {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the "
                        f"{MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit; downscale it first")


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
            check_image_size(*image.size, path, what)
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))  # a writable copy
    except Image.DecompressionBombError as err:  # PIL's own check, at open, for the most extreme sizes
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "too many pixels"
        raise UserError(f"{what} {path} is {size}, above the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit; "
                        "downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UserError(f"{what} {path}: not a readable image ({type(err).__name__}); "
                        f"give one of {', '.join(IMAGE_SUFFIXES)}") from None
