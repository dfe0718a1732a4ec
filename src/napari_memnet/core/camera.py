"""Camera (Poisson-Gaussian) noise: what a microscope's sensor adds, and its variance-stabilising transform.

A camera pixel counts ``photons ~ Poisson(peak * x)`` for a clean intensity
``x`` on 0..1, adds read noise ``N(0, read_noise^2)`` and an ``offset``, and is
stored as integer counts (``gain`` counts per photon, 1 by default):

    counts = offset + gain * Poisson(peak * x / gain) + N(0, read_noise^2)

* ``poisson_gaussian``: clean 0..1 -> uint16 counts (the benchmark's and the
  tests' camera model);
* ``estimate_noise``: the noise curve ``var(z) = a * z + b`` of counts ``z``,
  fitted to local means and local noise variances of the image itself;
* ``anscombe`` / ``inverse_anscombe``: the generalized Anscombe transform
  ``2/a * sqrt(a z + 3/8 a^2 + b)`` (noise of standard deviation about 1 for
  every intensity) and its algebraic inverse;
* ``stabilise`` / ``unstabilise``: that transform with the noise curve estimated
  from the image, and back to counts (``restore(..., camera=True)`` runs a
  Gaussian denoiser between the two, per plane; measured in docs/self-supervised.md).

Pure numpy; nothing of the package.
"""

from __future__ import annotations

import numpy as np


def poisson_gaussian(clean, peak: float, read_noise: float, offset: float = 100.0, *, gain: float = 1.0,
                     rng=None, dtype=np.uint16) -> np.ndarray:
    """Counts of a camera seeing ``clean`` (float, 0..1): ``offset + gain * Poisson(peak * clean / gain)
    + N(0, read_noise^2)``, rounded and clipped to ``dtype``'s range. ``peak``: the photon count (in
    counts) of intensity 1; ``read_noise``: the read noise's standard deviation in counts. ``rng``: a
    ``numpy.random.Generator`` or a seed. The input is not modified."""
    clean = np.asarray(clean, dtype=np.float64)
    if not (peak > 0 and gain > 0 and read_noise >= 0):
        raise ValueError(f"peak and gain must be positive and read_noise >= 0, got {peak}, {gain}, {read_noise}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    photons = rng.poisson(np.clip(clean, 0.0, None) * (peak / gain)) * gain
    counts = offset + photons + rng.normal(0.0, read_noise, clean.shape)
    info = np.iinfo(dtype)
    return np.clip(np.rint(counts), info.min, info.max).astype(dtype)


def _box_mean(img: np.ndarray, size: int) -> np.ndarray:
    """Means of the non-overlapping ``size`` x ``size`` blocks."""
    h, w = (img.shape[0] // size) * size, (img.shape[1] // size) * size
    return img[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))


def estimate_noise(counts, block: int = 8) -> tuple[float, float]:
    """``(a, b)`` of the noise curve ``var = a * z + b`` of a 2-D image of counts ``z``.

    The noise of each pixel is read from the residual of a 2x2 Haar high-pass
    (``(z00 - z01 - z10 + z11) / 2``: variance ``var`` for independent noise, zero
    on any locally linear intensity); ``block`` x ``block`` blocks give (mean,
    mean squared residual) points, averaged in 16 intensity bins of equal counts
    and fitted by least squares. (Keeping only each bin's flattest blocks biased
    ``a`` low by 20-35 % on Set12 with Poisson-Gaussian noise: the squared
    residuals of a block are noisy, so the lowest ones are low by chance.)
    ``a`` >= 1e-6."""
    z = np.asarray(counts, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 4 * block:
        raise ValueError(f"noise estimation needs a 2-D image of at least {4 * block} px a side, got {z.shape}")
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    q = z[:h, :w].reshape(h // 2, 2, w // 2, 2)
    resid = (q[:, 0, :, 0] - q[:, 0, :, 1] - q[:, 1, :, 0] + q[:, 1, :, 1]) / 2.0
    cells = max(1, block // 2)
    m, v = _box_mean(q.mean(axis=(1, 3)), cells).ravel(), _box_mean(resid**2, cells).ravel()
    edges = np.quantile(m, np.linspace(0, 1, 17))
    bins = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, 15)
    used = [k for k in range(16) if np.count_nonzero(bins == k) >= 2]
    if len(used) < 2 or np.ptp(m) == 0:
        return 1e-6, float(np.mean(v))
    a, b = np.polyfit([m[bins == k].mean() for k in used], [v[bins == k].mean() for k in used], 1)
    return float(max(a, 1e-6)), float(b)


def anscombe(counts, a: float, b: float) -> np.ndarray:
    """The generalized Anscombe transform ``2/a * sqrt(max(a z + 3/8 a^2 + b, 0))`` (float64)."""
    z = np.asarray(counts, dtype=np.float64)
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))


def inverse_anscombe(values, a: float, b: float) -> np.ndarray:
    """The algebraic inverse of ``anscombe`` (float64)."""
    t = np.asarray(values, dtype=np.float64)
    return ((a * t / 2.0) ** 2 - 0.375 * a * a - b) / a


def stabilise(counts) -> tuple[np.ndarray, tuple[float, float]]:
    """The generalized Anscombe transform of the 2-D image ``counts`` with its noise curve estimated from
    the image itself (``estimate_noise``): (float32 image of unit noise, the curve ``(a, b)``)."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.dtype.kind not in "iuf":
        raise ValueError(f"camera noise: a 2-D gray image of counts is needed, got {counts.dtype} {counts.shape}")
    if not np.isfinite(counts).all():
        raise ValueError("camera noise: the image contains non-finite values (NaN or inf)")
    a, b = estimate_noise(counts)
    return anscombe(counts, a, b).astype(np.float32), (a, b)


def unstabilise(restored, noise: tuple[float, float], dtype) -> np.ndarray:
    """``restored`` (in the transform's domain) back in counts, in ``dtype`` as restore returns results
    (integers rounded and clipped, floats as float32)."""
    from .intensity import cast_output

    return cast_output(inverse_anscombe(restored, *noise), np.dtype(dtype))
