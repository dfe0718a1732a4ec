"""Clean training images at several scales (the multi-scale augmentation of DnCNN's Train400 recipe).

With ``TrainConfig.scales`` such as ``(1, 0.9, 0.8, 0.7)`` every clean TRAINING image is also used
downscaled by each factor below 1: a bicubic, antialiased resize (MATLAB ``imresize``, ``core/imresize``).
A copy shows the same scene with its objects and textures smaller, as if photographed from further away,
without new photographs. (It is not simply "more high frequency": the antialiasing filter also removes
part of the original's own fine grain and compression noise.) The copies are named ``NAME@0.9`` and join
the training images after the validation images were held out, so no held-out image reaches training at
any scale. The sampler weighs images by their patch positions, so a copy at 0.7 is drawn about half as
often as its original (0.7**2 of its pixels).

Only clean images (synthetic degradation) can be rescaled: a real pair's noise or blur would change its
statistics with the resize, so pairs and noisy images alone are refused (``clean_only_problem``: by the
config for folders, and by both data paths for arrays the config cannot see).
"""

from __future__ import annotations

import numpy as np

from ..core.imresize import imresize


def check_scales(scales) -> str | None:
    """Why ``scales`` is not a valid setting (a sentence), or ``None``."""
    try:
        values = [float(s) for s in scales]
    except (TypeError, ValueError):
        return f"scales must be numbers in (0, 1] such as 1,0.9,0.8,0.7, got {scales!r}"
    if not all(0 < s <= 1 for s in values):
        return f"scales must be in (0, 1] (1: the image as it is; upscaling would only blur), got {scales!r}"
    return None


def factors(scales) -> list[float]:
    """The factors of ``scales`` below 1, largest first: the copies a run makes (none: the images as they are)."""
    return sorted({float(s) for s in scales if float(s) < 1}, reverse=True)


def clean_only_problem(scales, what: str) -> str | None:
    """The refusal of ``scales`` for a source that is not clean images (``what``: e.g. "a real pair"), or ``None``."""
    if not factors(scales):
        return None
    return (f"scales (downscaled copies of the training images) apply to clean images only: resizing {what} "
            "would change its noise or blur; give scales 1 (or none) with it")


def rescaled(planes: list[tuple[str, np.ndarray]], scales, min_size: int, grid=None) -> list[tuple[str, np.ndarray]]:
    """``planes`` (name, 2-D float32) followed by each one downscaled by every factor of ``scales`` below 1.

    A copy smaller than ``min_size`` (the training crop) on either side is left out; the original stays.
    Values stay within the original's range (bicubic overshoot is clipped), dtype float32; ``grid``, when
    given, maps each copy onto the value grid its originals are on (deblocking: the 8-bit grid JPEG encodes)."""
    out = list(planes)
    for s in factors(scales):
        for name, plane in planes:
            small = imresize(plane.astype(np.float64), s)
            if min(small.shape) < min_size:
                continue
            small = np.clip(small, plane.min(), plane.max()).astype(np.float32)
            if grid is not None:
                small = grid(small)
            out.append((f"{name}@{s:g}", small))
    return out
