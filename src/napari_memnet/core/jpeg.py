"""JPEG compression of gray (Y) images through Pillow (libjpeg, standard
quantisation tables scaled by quality, baseline, no optimisation) -- the usual
stand-in for MATLAB ``imwrite(..., 'Quality', q)``."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["jpeg_compress"]


def _check_quality(quality) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) and not (
        isinstance(quality, float) and quality.is_integer()
    ):
        raise ValueError(f"JPEG quality must be an integer 1..100, got {quality!r}")
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be an integer 1..100, got {quality!r}")
    return q


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode a 2-D gray image as JPEG at ``quality`` and decode it again.

    uint8 input -> uint8 output. Float input (0..1 scale) is first stored as
    8-bit (x*255 rounded, clipped to 0..255) and comes back as float of the
    same dtype on the 0..1 scale. The input is not modified."""
    from PIL import Image

    q = _check_quality(quality)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"jpeg_compress expects a 2-D gray image (H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("jpeg_compress got an image with NaN or infinite values")
        from .color import to_uint8

        data = to_uint8(arr)
    else:
        raise ValueError(f"jpeg_compress expects uint8 (0..255) or float (0..1) input, got dtype {arr.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data)).save(buffer, format="JPEG", quality=q)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert("L"), dtype=np.uint8).copy()
    if arr.dtype == np.uint8:
        return out
    return (out.astype(np.float64) / 255.0).astype(arr.dtype)
