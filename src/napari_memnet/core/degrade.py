"""The degradations MemNet learns to undo, on numpy arrays and torch tensors.

Intensities are float on the 0..1 scale (8-bit value / 255); noise sigma is
on the 0..255 scale. This module gathers:

* ``add_noise``: additive white Gaussian noise (numpy or torch, scalar or
  per-sample sigma);
* ``imresize`` (MATLAB-exact bicubic, from :mod:`napari_memnet.core.imresize`),
  ``bicubic_degrade`` (down by 1/scale then up by scale) and ``modcrop``;
* ``jpeg_compress`` (Pillow/libjpeg, from :mod:`napari_memnet.core.jpeg`);
* blur: ``make_psf`` (Gaussian, defocus disk, small motion streak of a given
  width), ``blur`` (symmetric borders), ``draw_psf`` (the ``deblur`` task's
  training distribution), from :mod:`napari_memnet.core.blur`;
* ``rgb_to_ycbcr``, ``ycbcr_to_rgb``, ``rgb_to_y``, ``rgb_to_gray`` (MATLAB
  semantics, from :mod:`napari_memnet.core.color`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .blur import PSF_KINDS, blur, draw_psf, make_psf, psf_radius
from .color import rgb_to_gray, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from .imresize import imresize
from .jpeg import jpeg_compress

__all__ = [
    "PSF_KINDS",
    "add_noise",
    "bicubic_degrade",
    "blur",
    "draw_psf",
    "imresize",
    "jpeg_compress",
    "make_psf",
    "modcrop",
    "psf_radius",
    "rgb_to_gray",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def _sigma_shape(n_sigma: int, img_shape: tuple) -> tuple:
    if len(img_shape) < 1 or img_shape[0] != n_sigma:
        raise ValueError(
            f"a per-sample sigma of length {n_sigma} needs a batch whose first axis has {n_sigma} "
            f"samples, got image shape {tuple(img_shape)}"
        )
    return (n_sigma,) + (1,) * (len(img_shape) - 1)


def add_noise(img, sigma, *, rng=None):
    """``img`` + white Gaussian noise of standard deviation ``sigma / 255``.

    numpy: ``img`` a float array, ``rng`` a ``numpy.random.Generator`` (or an
    int seed, or None for fresh entropy); the noise is drawn in float64 and the
    result keeps ``img``'s dtype. torch: ``img`` a float tensor, ``rng`` a
    ``torch.Generator`` on the tensor's device (or None for the global one); the
    noise is drawn in the tensor's dtype on its device. ``sigma`` is a number
    or, for a batch (N, ...), a 1-D array/tensor of N per-sample values. No
    clipping; the input is not modified."""
    if _is_torch(img):
        return _add_noise_torch(img, sigma, rng)
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"add_noise expects a float image on the 0..1 scale, got dtype {arr.dtype}")
    sig = _numpy_sigma(sigma, arr.shape)
    if rng is None or isinstance(rng, numbers.Integral):
        rng = np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"add_noise on numpy needs a numpy.random.Generator (or a seed), got {type(rng).__name__}")
    noise = rng.standard_normal(arr.shape)
    return (arr.astype(np.float64) + noise * (sig / 255.0)).astype(arr.dtype)


def _numpy_sigma(sigma, shape):
    sig = np.asarray(sigma, dtype=np.float64)
    if sig.ndim == 0:
        pass
    elif sig.ndim == 1:
        sig = sig.reshape(_sigma_shape(sig.shape[0], shape))
    else:
        raise ValueError(f"sigma must be a number or a 1-D per-sample array, got shape {sig.shape}")
    if not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError(f"sigma must be finite and >= 0 (0..255 scale), got {sigma!r}")
    return sig


def _add_noise_torch(img, sigma, rng):
    import torch

    if not img.is_floating_point():
        raise ValueError(f"add_noise expects a float tensor on the 0..1 scale, got {img.dtype}")
    if rng is not None and not isinstance(rng, torch.Generator):
        raise ValueError(f"add_noise on a tensor needs a torch.Generator, got {type(rng).__name__}")
    if torch.is_tensor(sigma):
        sig = sigma.detach().to(device=img.device, dtype=img.dtype)
    else:
        sig = torch.as_tensor(np.asarray(sigma, dtype=np.float64), dtype=img.dtype, device=img.device)
    if sig.ndim == 1:
        sig = sig.reshape(_sigma_shape(sig.shape[0], tuple(img.shape)))
    elif sig.ndim != 0:
        raise ValueError(f"sigma must be a number or a 1-D per-sample tensor, got shape {tuple(sig.shape)}")
    if not bool(torch.isfinite(sig).all()) or bool((sig < 0).any()):
        raise ValueError(f"sigma must be finite and >= 0 (0..255 scale), got {sigma!r}")
    noise = torch.randn(img.shape, generator=rng, dtype=img.dtype, device=img.device)
    return img + noise * (sig / 255.0)


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (numbers.Integral, float)) or int(scale) != scale \
            or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _as_image(img, what: str):
    """``img`` as a numpy array (tensors pass through) with at least 2 dimensions."""
    if not _is_torch(img):
        img = np.asarray(img)
    if img.ndim < 2:
        raise ValueError(f"{what} expects an image with at least 2 dimensions (..., H, W), "
                         f"got shape {tuple(img.shape)}")
    return img


def modcrop(img, scale):
    """Crop the last two axes down to multiples of ``scale`` (top-left kept),
    like the ``modcrop`` of the SR test scripts. Returns a view."""
    s = _check_scale(scale)
    img = _as_image(img, "modcrop")
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if h < s or w < s:
        raise ValueError(f"image {h}x{w} is smaller than the scale {s}")
    return img[..., : h - h % s, : w - w % s]


def bicubic_degrade(img, scale):
    """MATLAB bicubic down by 1/``scale`` then up by ``scale``: the SR network
    input, same shape as ``img`` (last two axes must divide by ``scale``).
    numpy or torch; no rounding or clipping."""
    s = _check_scale(scale)
    img = _as_image(img, "bicubic_degrade")
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if h % s or w % s:
        raise ValueError(f"image {h}x{w} is not divisible by scale {s}; modcrop it first")
    low = imresize(img, 1.0 / s)
    return imresize(low, float(s))
