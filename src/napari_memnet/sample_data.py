"""napari sample data: degraded images, each with its clean reference.

Every sample is computed locally at load time (nothing is downloaded) from the
bundled public-domain image ``samples/astronaut_gray_256.png`` (see
``samples/README.md``) or, for the microscopy-like sample, procedurally. The
degradations are the ones the models are trained on (``napari_memnet.core.degrade``).

Each function returns napari ``LayerData`` tuples: the clean reference first
(bottom) and the degraded image last (on top, so it is the selected layer).
All intensities are on the engine's 0..1 scale (float32, clipped to 0..1 like a
real recording, so ``restore`` uses them as they are) except the JPEG sample,
which is 8-bit like a real JPEG file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
ASTRONAUT = SAMPLES_DIR / "astronaut_gray_256.png"

NOISE_SIGMA = 25  # on the 0..255 scale
SR_SCALE = 2
JPEG_QUALITY = 10
BLUR_WIDTH = 2.0  # Gaussian PSF sigma in pixels (the deblur evaluation protocol's level 2)


def astronaut_uint8() -> np.ndarray:
    """The bundled 256x256 gray crop of NASA's astronaut portrait, uint8."""
    from PIL import Image

    with Image.open(ASTRONAUT) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def _sample(clean: np.ndarray, degraded: np.ndarray, name: str, degradation: str, limits: tuple,
            reference: str = "astronaut (clean reference)", **layer_kwargs) -> list[tuple]:
    """The clean reference (bottom) and the degraded image (top, selected), with the same contrast limits."""
    return [
        (clean, {"name": reference, "visible": True, "contrast_limits": limits}, "image"),
        (degraded, {"name": name, "contrast_limits": limits, **layer_kwargs,
                    "metadata": {"degradation": degradation}}, "image"),
    ]


def noisy_sample() -> list[tuple]:
    """Astronaut with additive white Gaussian noise, sigma 25 (of 255), clipped to 0..1."""
    from .core.degrade import add_noise

    clean = astronaut_uint8().astype(np.float32) / 255.0
    noisy = add_noise(clean, NOISE_SIGMA, rng=np.random.default_rng(0))
    noisy = np.clip(noisy, 0.0, 1.0).astype(np.float32)
    return _sample(clean, noisy, "astronaut noisy", f"gaussian noise sigma {NOISE_SIGMA}/255", (0.0, 1.0))


def lowres_sample() -> list[tuple]:
    """Astronaut downscaled x2 (MATLAB bicubic), shown at layer scale 2 so it overlays."""
    from .core.degrade import imresize

    clean = astronaut_uint8().astype(np.float32) / 255.0
    low = np.clip(imresize(clean, 1.0 / SR_SCALE), 0.0, 1.0).astype(np.float32)
    # A low-res pixel i covers high-res pixels [i*s, (i+1)*s): its centre sits at
    # i*s + (s-1)/2 in the clean image's pixel coordinates.
    offset = (SR_SCALE - 1) / 2.0
    return _sample(clean, low, f"astronaut low-res x{SR_SCALE}", f"bicubic downscale x{SR_SCALE}", (0.0, 1.0),
                   scale=(SR_SCALE, SR_SCALE), translate=(offset, offset))


def jpeg_sample() -> list[tuple]:
    """Astronaut saved as JPEG at quality 10 (8-bit, via Pillow/libjpeg)."""
    from .core.degrade import jpeg_compress

    clean = astronaut_uint8()
    compressed = np.asarray(jpeg_compress(clean, JPEG_QUALITY), dtype=np.uint8)
    return _sample(clean, compressed, f"astronaut JPEG q{JPEG_QUALITY}", f"JPEG quality {JPEG_QUALITY}", (0, 255))


def blurry_sample() -> list[tuple]:
    """Astronaut blurred by a Gaussian PSF of sigma 2 px plus 1 % white noise (the ``deblur``
    evaluation protocol at level 2), clipped to 0..1."""
    from .core.degrade import add_noise, blur, make_psf
    from .core.tasks import DEBLUR_EVAL_NOISE

    clean = astronaut_uint8().astype(np.float32) / 255.0
    blurred = add_noise(blur(clean, make_psf("gaussian", BLUR_WIDTH)), DEBLUR_EVAL_NOISE, rng=np.random.default_rng(0))
    blurred = np.clip(blurred, 0.0, 1.0).astype(np.float32)
    return _sample(clean, blurred, "astronaut blurred",
                   f"Gaussian PSF sigma {BLUR_WIDTH:g} px + noise sigma {DEBLUR_EVAL_NOISE:g}/255", (0.0, 1.0))


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (numpy only)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.pad(img.astype(np.float64), radius, mode="reflect")
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 0, out)
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, out)
    return out


def make_cells(shape=(256, 256), n_cells: int = 28, seed: int = 0) -> np.ndarray:
    """A clean fluorescence-like image: textured cells with darker nuclei, float 0..1."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cytoplasm = np.zeros(shape)
    nuclei = np.zeros(shape)
    centres: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(centres) == n_cells:
            break
        cy, cx = rng.uniform(12, h - 12), rng.uniform(12, w - 12)
        if all((cy - y) ** 2 + (cx - x) ** 2 > 26.0**2 for y, x in centres):
            centres.append((cy, cx))
    for cy, cx in centres:
        a, b = rng.uniform(11, 18), rng.uniform(8, 14)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        cytoplasm = np.maximum(cytoplasm, ((u / a) ** 2 + (v / b) ** 2 <= 1.0) * rng.uniform(0.45, 0.75))
        nuclei = np.maximum(nuclei, ((u / (0.45 * a)) ** 2 + (v / (0.5 * b)) ** 2 <= 1.0) * 1.0)
    texture = _gaussian_blur(rng.standard_normal(shape), 1.5)
    texture = 1.0 + 0.9 * texture / (np.abs(texture).max() + 1e-12)
    cells = cytoplasm * texture * (1.0 - 0.45 * nuclei)
    cells = _gaussian_blur(cells, 1.2)
    background = 0.06 + 0.04 * (xx / w)  # uneven illumination
    return np.clip(background + cells, 0.0, 1.0).astype(np.float32)


def cells_sample() -> list[tuple]:
    """Microscopy-like cells with Poisson (shot) and Gaussian (read) noise."""
    clean = make_cells()
    rng = np.random.default_rng(1)
    peak_photons = 30.0
    read_noise = 0.03
    noisy = rng.poisson(clean * peak_photons) / peak_photons
    noisy = noisy + rng.normal(0.0, read_noise, clean.shape)
    noisy = np.clip(noisy, 0.0, 1.0).astype(np.float32)
    return _sample(clean, noisy, "cells", f"Poisson peak {peak_photons:g} photons + Gaussian read noise {read_noise:g}",
                   (0.0, 1.0), reference="cells (clean reference)")
