"""The one per-plane restore path: eager, lazy and distributed restoration all run it.

``restore_item(src, target, norms, runner, rgb=..., scale=..., crop=...)``
restores one item of an image, a ``(Y, X)`` plane or a ``(Y, X, C)`` plane
with channels, into ``target``:

* intensities: each plane through its ``core.intensity.Intensity`` map to
  0..1 and back to the output dtype (``norms``: one map for a gray plane or
  the RGB channels together, one per independent channel);
* RGB(A): through the luma (Y of YCbCr, MATLAB semantics) with the chroma
  carried and alpha left alone;
* super-resolution: each plane (and the chroma, and alpha) is MATLAB-bicubic
  upsampled by ``scale`` first, so the output is ``scale`` times larger;
* the network: ``runner`` (an ``engine.PlaneRunner``) runs every float plane
  tile by tile;
* ``crop`` (two slices on the upsampled plane) keeps part of the result: a
  lazy block drops its halo; the eager driver keeps everything.

It is a generator: it yields what ``runner.run`` yields (once per tile), so
the eager driver reports progress per tile and the lazy blocks just drain it.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..core.intensity import cast_output

FULL = (slice(None), slice(None))


def check_dtype(dtype) -> np.dtype:
    """The dtype of an image the pipeline can restore (integer or float), or ValueError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise ValueError(
            f"expected an integer or floating-point image, got dtype {dtype} "
            "(bool, complex, object and string arrays are not images)"
        )
    return dtype


def upsample(values: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic upsampling of the last two axes by an integer ``scale`` (float32)."""
    if scale == 1:
        return np.asarray(values, dtype=np.float32)
    from ..core.imresize import imresize

    h, w = values.shape[-2:]
    return np.asarray(imresize(values, output_shape=(h * scale, w * scale)), dtype=np.float32)


def restore_item(src: np.ndarray, target: np.ndarray, norms: tuple, runner, *, rgb: bool, scale: int = 1,
                 crop: tuple = FULL, cancel=None) -> Generator:
    """Restore ``src`` (Y, X) or (Y, X, C) into ``target`` (the cropped output
    plane, same layout, the output dtype); yields once per tile."""
    if rgb:
        yield from _restore_rgb(src, target, norms[0], runner, scale, crop, cancel)
        return
    channels = [None] if src.ndim == 2 else range(src.shape[-1])
    for k, norm in zip(channels, norms):
        plane = upsample(norm.forward(src if k is None else src[..., k]), scale)
        restored = np.empty(plane.shape, dtype=np.float32)
        yield from runner.run(plane, restored, cancel)
        norm.inverse_into(restored[crop], target if k is None else target[..., k])


def _restore_rgb(src, target, norm, runner, scale, crop, cancel) -> Generator:
    from ..core.color import rgb_to_ycbcr, ycbcr_to_rgb

    ycc = np.asarray(rgb_to_ycbcr(norm.forward(src[..., :3])), dtype=np.float32)
    if scale > 1:
        ycc = np.moveaxis(upsample(np.moveaxis(ycc, -1, 0), scale), 0, -1)
    restored = np.empty(ycc.shape[:2], dtype=np.float32)
    yield from runner.run(np.ascontiguousarray(ycc[..., 0]), restored, cancel)
    ycc = ycc[crop].copy()
    ycc[..., 0] = restored[crop]
    target[..., :3] = norm.inverse(np.asarray(ycbcr_to_rgb(ycc), dtype=np.float32), target.dtype)
    if src.shape[-1] == 4:
        alpha = src[..., 3]
        if scale > 1:
            alpha = cast_output(upsample(np.asarray(alpha, dtype=np.float32), scale), target.dtype)
        target[..., 3] = alpha[crop]
