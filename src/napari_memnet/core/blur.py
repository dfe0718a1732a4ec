"""Blur point-spread functions (PSFs) and blurring, numpy only (no scipy).

Every PSF is described by its ``width``: the standard deviation of its intensity profile along
one axis, in pixels, so a Gaussian, a defocus disk and a motion streak of the same width blur
about as much.

* ``gaussian_psf(width)``: a Gaussian of sigma ``width``, cut at 3 sigma;
* ``disk_psf(width)``: a uniform disk (defocus) of radius ``2 * width`` (its per-axis standard
  deviation is radius / 2), anti-aliased by 8 x 8 supersampling of every pixel;
* ``motion_psf(width, angle)``: a straight streak of length ``sqrt(12) * width`` through the
  centre at ``angle`` radians (a uniform segment of length L has standard deviation
  L / sqrt(12)), drawn with bilinear weights at 16 samples per pixel of length.

Drawing on pixels widens the small ones a little: the disk's pixel areas add about 1/12 px^2 of
variance per axis, the streak's bilinear weights about 1/6 (``tests/test_deblur.py`` checks the
second moments). All are normalised to sum 1, odd-sized and centred. ``blur(img, psf)`` convolves the last two
axes with symmetric (half-sample mirror) borders, same size out. ``draw_psf(rng, lo, hi)`` is
the training distribution of the ``deblur`` task: a kind drawn with ``KIND_WEIGHTS``, a width
uniform in [lo, hi], an angle uniform in [0, pi).
"""

from __future__ import annotations

import math

import numpy as np

PSF_KINDS = ("gaussian", "disk", "motion")
KIND_WEIGHTS = (0.5, 0.3, 0.2)  # training: mostly Gaussian (out-of-focus light), defocus disks, small motion
SQRT12 = math.sqrt(12.0)


def _check_width(width) -> float:
    width = float(width)
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"PSF width must be a positive number of pixels, got {width!r}")
    return width


def psf_radius(kind: str, width: float) -> int:
    """Half the side of the kernel of a PSF (the side is 2 * radius + 1)."""
    width = _check_width(width)
    if kind == "gaussian":
        return max(1, math.ceil(3.0 * width))
    if kind == "disk":
        return max(1, math.ceil(2.0 * width))
    if kind == "motion":
        return max(1, math.ceil(SQRT12 * width / 2.0) + 1)
    raise ValueError(f"unknown PSF kind {kind!r}; expected one of {PSF_KINDS}")


def gaussian_psf(width: float, radius: int | None = None) -> np.ndarray:
    r = psf_radius("gaussian", width) if radius is None else int(radius)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / _check_width(width)) ** 2)
    psf = np.outer(g, g)
    return psf / psf.sum()


def disk_psf(width: float, radius: int | None = None) -> np.ndarray:
    r = psf_radius("disk", width) if radius is None else int(radius)
    big = 2.0 * _check_width(width)
    sub = (np.arange(8, dtype=np.float64) + 0.5) / 8.0 - 0.5  # 8 x 8 samples inside each pixel
    centres = np.arange(-r, r + 1, dtype=np.float64)
    ys = (centres[:, None] + sub[None, :]).reshape(-1)
    inside = (ys[:, None] ** 2 + ys[None, :] ** 2) <= big * big
    psf = inside.reshape(2 * r + 1, 8, 2 * r + 1, 8).mean(axis=(1, 3))
    return psf / psf.sum()


def motion_psf(width: float, angle: float = 0.0, radius: int | None = None) -> np.ndarray:
    length = SQRT12 * _check_width(width)
    r = psf_radius("motion", width) if radius is None else int(radius)
    n = max(2, int(math.ceil(length * 16)))
    t = (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5
    ys, xs = t * length * math.sin(angle) + r, t * length * math.cos(angle) + r
    psf = np.zeros((2 * r + 1, 2 * r + 1))
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(psf, (np.clip(y0 + dy, 0, 2 * r), np.clip(x0 + dx, 0, 2 * r)), wy * wx)
    return psf / psf.sum()


def make_psf(kind: str, width: float, angle: float = 0.0, radius: int | None = None) -> np.ndarray:
    """The PSF ``kind`` of ``width`` (float64, sums to 1); ``radius`` pads it to a common size."""
    if radius is not None and radius < psf_radius(kind, width):
        raise ValueError(f"radius {radius} is smaller than the {kind} PSF of width {width} needs")
    if kind == "gaussian":
        return gaussian_psf(width, radius)
    if kind == "disk":
        return disk_psf(width, radius)
    if kind == "motion":
        return motion_psf(width, angle, radius)
    raise ValueError(f"unknown PSF kind {kind!r}; expected one of {PSF_KINDS}")


def draw_psf(rng: np.random.Generator, lo: float, hi: float) -> tuple[str, float, float]:
    """(kind, width, angle) from the deblur task's training distribution."""
    kind = PSF_KINDS[int(rng.choice(len(PSF_KINDS), p=KIND_WEIGHTS))]
    width = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    angle = float(rng.uniform(0.0, math.pi))
    return kind, width, angle


def blur(img, psf: np.ndarray) -> np.ndarray:
    """``img`` (..., H, W) float convolved with ``psf`` over its last two axes, symmetric borders,
    same shape and dtype (computed in float64 by FFT)."""
    arr = np.asarray(img)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"blur expects a float image on the 0..1 scale, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"blur expects an image (..., H, W), got shape {arr.shape}")
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"a PSF must be a 2-D kernel of odd sides, got shape {psf.shape}")
    ry, rx = psf.shape[0] // 2, psf.shape[1] // 2
    h, w = arr.shape[-2:]
    pad = [(0, 0)] * (arr.ndim - 2) + [(ry, ry), (rx, rx)]
    padded = np.pad(arr.astype(np.float64), pad, mode="symmetric")
    size = (padded.shape[-2] + 2 * ry, padded.shape[-1] + 2 * rx)
    spectrum = np.fft.rfft2(padded, s=size) * np.fft.rfft2(psf, s=size)
    full = np.fft.irfft2(spectrum, s=size)
    # the full linear convolution; the part centred on the original pixels starts at 2r
    out = full[..., 2 * ry: 2 * ry + h, 2 * rx: 2 * rx + w]
    return out.astype(arr.dtype)
