"""The margins that tests/test_bundled.py pins, measured with the shipped weights (the tests' own crops
and code paths), so that each test docstring's "measured" numbers come from a command:

    python benchmarks/bundled_margins.py [denoise sr deblock deblur]

Prints, per case, the per-image gains over the degraded input and their mean (dB)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from test_bundled import _gray  # noqa: E402  (the tests' crop)

from napari_memnet import load_model  # noqa: E402
from napari_memnet.core.blur import blur, make_psf  # noqa: E402
from napari_memnet.core.degrade import add_noise, imresize, jpeg_compress, modcrop  # noqa: E402
from napari_memnet.core.metrics import psnr  # noqa: E402
from napari_memnet.core.tasks import DEBLUR_EVAL_NOISE  # noqa: E402
from napari_memnet.restoration.eager import restore_plane  # noqa: E402


def report(name, label, pairs, shave=0):
    """Restore each (clean, degraded) pair with model ``name``; print the gains over the degraded input."""
    model = load_model(name)
    gains = [psnr(restore_plane(model, degraded, device="cpu"), clean, shave=shave) - psnr(degraded, clean, shave=shave)
             for clean, degraded in pairs]
    print(f"{name} {label}: {np.round(gains, 2).tolist()} mean {float(np.mean(gains)):+.2f} dB", flush=True)


def denoise(data):
    names = ("01.png", "02.png", "03.png", "04.png")
    for sigma in (25, 50):
        crops = [_gray(data / "Set12" / n, size=96) for n in names]
        report("memnet-fast-denoise", f"sigma {sigma}",
               [(c, add_noise(c, sigma, rng=np.random.default_rng(i))) for i, c in enumerate(crops)])


def sr(data):
    for scale in (2, 4):
        hrs = [modcrop(_gray(p, size=96), scale) for p in sorted((data / "Set5").glob("*.png"))]
        report("memnet-fast-sr", f"x{scale}",
               [(hr, imresize(imresize(hr, 1 / scale), float(scale)).astype(np.float32)) for hr in hrs], shave=scale)


def deblock(data):
    for quality in (10, 20):
        crops = [_gray(p, size=96) for p in sorted((data / "Classic5").glob("*.png"))[:3]]
        report("memnet-fast-deblock", f"q{quality}", [(c, jpeg_compress(c, quality)) for c in crops])


def deblur(data):
    for width in (2, 3):
        crops = [_gray(p, size=96) for p in sorted((data / "Set12").glob("*.png"))[:3]]
        report("mhnet-deblur", f"{width} px",
               [(c, add_noise(blur(c, make_psf("gaussian", width)), DEBLUR_EVAL_NOISE, rng=np.random.default_rng(i)))
                for i, c in enumerate(crops)])


CASES = {"denoise": denoise, "sr": sr, "deblock": deblock, "deblur": deblur}

if __name__ == "__main__":
    import os

    root = Path(os.environ.get("NAPARI_MEMNET_DATA", ROOT.parent / "shared" / "data")) / "test"
    for case in sys.argv[1:] or list(CASES):
        CASES[case](root)
