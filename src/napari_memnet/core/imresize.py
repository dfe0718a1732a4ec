"""MATLAB-compatible bicubic ``imresize`` on the last two axes.

The algorithm follows MATLAB's documented ``imresize`` (the ``contributions``
step of ``imresize.m``):

* Keys cubic kernel with a = -0.5, support 4;
* when shrinking (scale < 1) the kernel is widened by 1/scale (antialiasing):
  ``h(x) = scale * cubic(scale * x)``, width ``4 / scale``;
* output pixel ``x`` (1-based) samples input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* the taps are ``floor(u - width / 2) + (0 .. ceil(width) + 1)``;
* out-of-range taps are mirrored symmetrically (``[1..n, n..1]`` repeated);
* each output's weights are normalised to sum 1.

The weights of one axis form an (out x in) matrix, computed once in float64
with numpy and cached; resizing is two matrix products, so the same code runs
on numpy arrays and on torch tensors of any dtype on any device. Nothing is
rounded or clipped.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["cubic", "resize_weights", "imresize", "output_size"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    x2, x3 = x * x, x * x * x
    near = (1.5 * x3 - 2.5 * x2 + 1.0) * (x <= 1)
    far = (-0.5 * x3 + 2.5 * x2 - 4.0 * x + 2.0) * ((x > 1) & (x <= 2))
    return near + far


def output_size(in_size: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ``ceil(scale * in_size)``."""
    # the small tolerance keeps e.g. 0.1 * 30 = 3.0000000000000004 at 3
    return int(math.ceil(scale * in_size - 1e-9))


@lru_cache(maxsize=256)
def _weights_cached(in_size: int, out_size: int, scale: float) -> np.ndarray:
    kernel_width = 4.0
    if scale < 1:  # antialiasing: widen the kernel when shrinking
        def kernel(t):
            return scale * cubic(scale * t)

        kernel_width /= scale
    else:
        kernel = cubic
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric mirror of out-of-range indices: aux = [1..n, n..1]
    aux = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
    mirrored = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_size)[:, None], mirrored.shape)
    np.add.at(matrix, (rows, mirrored), weights)
    matrix.setflags(write=False)
    return matrix


def resize_weights(in_size: int, out_size: int, scale: float | None = None) -> np.ndarray:
    """The (out_size x in_size) float64 bicubic weight matrix of one axis.

    ``scale`` defaults to ``out_size / in_size`` (as MATLAB does when given an
    output size). The returned array is cached and read-only."""
    if int(in_size) < 1 or int(out_size) < 1:
        raise ValueError(f"resize sizes must be >= 1, got in={in_size}, out={out_size}")
    if scale is None:
        scale = out_size / in_size
    if not scale > 0:
        raise ValueError(f"resize scale must be > 0, got {scale}")
    return _weights_cached(int(in_size), int(out_size), float(scale))


def _as_torch(matrix: np.ndarray, like):
    """A weight matrix as a tensor of ``like``'s dtype on its device (small: out x in)."""
    import torch

    return torch.from_numpy(np.array(matrix)).to(device=like.device, dtype=like.dtype)


def _is_torch(img) -> bool:
    return type(img).__module__.startswith("torch") and hasattr(img, "device")


def imresize(img, scale: float | None = None, *, output_shape: tuple[int, int] | None = None):
    """Bicubic resize of the last two axes exactly like MATLAB ``imresize``.

    ``img``: numpy array or torch tensor with at least 2 dimensions (any
    leading dims). numpy float arrays keep their dtype, integer arrays are
    computed in float64 (no rounding); torch tensors must be floating point and
    keep dtype and device. Give either ``scale`` (output = ceil(scale * size))
    or ``output_shape=(height, width)``."""
    is_torch = _is_torch(img)
    if not is_torch:
        img = np.asarray(img)
    if img.ndim < 2:
        raise ValueError(f"imresize expects an image with at least 2 dimensions (..., H, W), "
                         f"got shape {tuple(img.shape)}")
    height, width = int(img.shape[-2]), int(img.shape[-1])
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize needs exactly one of scale or output_shape")
    if scale is not None:
        scale = float(scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"imresize scale must be a positive finite number, got {scale}")
        out_h, out_w = output_size(height, scale), output_size(width, scale)
        scale_h = scale_w = scale
    else:
        if len(output_shape) != 2:
            raise ValueError(f"output_shape must be (height, width), got {output_shape!r}")
        out_h, out_w = (int(s) for s in output_shape)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"output_shape must be positive, got {output_shape!r}")
        scale_h, scale_w = out_h / height, out_w / width
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize of a {height}x{width} image by {scale} gives an empty image")
    w_h = resize_weights(height, out_h, scale_h)
    w_w = resize_weights(width, out_w, scale_w)
    if is_torch:
        if not img.is_floating_point():
            raise ValueError(f"imresize expects a floating-point tensor, got {img.dtype}")
        # MATLAB resizes the rows (height) first, then the columns
        out = _as_torch(w_h, img) @ img
        return out @ _as_torch(w_w, img).transpose(0, 1)
    if not np.issubdtype(img.dtype, np.floating):
        if not (np.issubdtype(img.dtype, np.integer) or img.dtype == np.bool_):
            raise ValueError(f"imresize expects a real image, got dtype {img.dtype}")
        img = img.astype(np.float64)
    dtype = img.dtype
    out = w_h.astype(dtype, copy=False) @ img
    return out @ w_w.T.astype(dtype, copy=False)
