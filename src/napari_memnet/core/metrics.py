"""Image quality metrics: PSNR and SSIM on 2-D images (float64 internally).

SSIM is the original of Wang, Bovik, Sheikh and Simoncelli (2004) as in the
reference ``ssim_index.m``: an 11x11 Gaussian window with sigma 1.5
(normalised to sum 1), K1 = 0.01, K2 = 0.03, statistics filtered with
'valid' borders (no padding), the mean of the SSIM map. ``data_range`` is the
dynamic range L of the images (1.0 for 0..1 images, 255 for 8-bit values).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "ssim", "gaussian_window"]

_WINDOW_SIZE = 11
_WINDOW_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _pair(x, ref, shave: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x)
    b = np.asarray(ref)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{what} expects two 2-D images, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"{what} expects images of the same shape, got {a.shape} and {b.shape}")
    for arr in (a, b):
        if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
            raise ValueError(f"{what} expects real-valued images, got dtype {arr.dtype}")
    if isinstance(shave, bool) or int(shave) != shave or shave < 0:
        raise ValueError(f"shave must be an integer >= 0, got {shave!r}")
    shave = int(shave)
    if shave:
        if 2 * shave >= min(a.shape):
            raise ValueError(f"shave {shave} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        a = a[shave:-shave, shave:-shave]
        b = b[shave:-shave, shave:-shave]
    return a.astype(np.float64), b.astype(np.float64)


def _check_range(data_range) -> float:
    r = float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    return r


def psnr(x, ref, *, data_range: float = 1.0, shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(L^2 / MSE)``; inf when equal.

    ``shave`` pixels are removed at each border of both images first."""
    r = _check_range(data_range)
    a, b = _pair(x, ref, shave, "psnr")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(r * r / mse)


def gaussian_window(size: int = _WINDOW_SIZE, sigma: float = _WINDOW_SIGMA) -> np.ndarray:
    """The 1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (sums to 1);
    the 2-D window is its outer product with itself."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``img`` with ``outer(g, g)``."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(img, g.size, axis=0) @ g  # (H-k+1, W)
    return sliding_window_view(rows, g.size, axis=1) @ g  # (H-k+1, W-k+1)


def ssim(x, ref, *, data_range: float = 1.0, shave: int = 0) -> float:
    """Mean structural similarity (Wang et al. 2004, ``ssim_index.m``); 1.0 when equal.

    ``shave`` pixels are removed at each border of both images first; the
    (shaved) images must be at least 11x11."""
    r = _check_range(data_range)
    a, b = _pair(x, ref, shave, "ssim")
    if min(a.shape) < _WINDOW_SIZE:
        raise ValueError(f"ssim needs images of at least {_WINDOW_SIZE}x{_WINDOW_SIZE}, got {a.shape[0]}x{a.shape[1]}")
    c1 = (_K1 * r) ** 2
    c2 = (_K2 * r) ** 2
    g = gaussian_window()
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    mu_a2, mu_b2, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a, g) - mu_a2
    var_b = _filter_valid(b * b, g) - mu_b2
    cov = _filter_valid(a * b, g) - mu_ab
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_a2 + mu_b2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
