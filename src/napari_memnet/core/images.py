"""Image files: which suffixes are images, a folder's images, and a file's raw pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The raw pixel array of a PNG/JPEG/BMP (Pillow) or TIFF (tifffile) file."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile
        except ImportError:  # pragma: no cover - optional dependency
            from PIL import Image

            with Image.open(path) as im:
                return np.asarray(im)
        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr"):
            im = im.convert("RGB")
        elif im.mode == "1":
            im = im.convert("L")
        return np.asarray(im)
