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


def report(label, gains):
    print(f"{label}: {np.round(gains, 2).tolist()} mean {float(np.mean(gains)):+.2f} dB", flush=True)


def denoise(data):
    model = load_model("memnet-fast-denoise")
    for sigma in (25, 50):
        gains = []
        for i, name in enumerate(("01.png", "02.png", "03.png", "04.png")):
            clean = _gray(data / "Set12" / name, size=96)
            noisy = add_noise(clean, sigma, rng=np.random.default_rng(i))
            gains.append(psnr(restore_plane(model, noisy, device="cpu"), clean) - psnr(noisy, clean))
        report(f"memnet-fast-denoise sigma {sigma}", gains)


def sr(data):
    model = load_model("memnet-fast-sr")
    for scale in (2, 4):
        gains = []
        for path in sorted((data / "Set5").glob("*.png")):
            hr = modcrop(_gray(path, size=96), scale)
            bic = imresize(imresize(hr, 1 / scale), float(scale)).astype(np.float32)
            gains.append(psnr(restore_plane(model, bic, device="cpu"), hr, shave=scale) - psnr(bic, hr, shave=scale))
        report(f"memnet-fast-sr x{scale}", gains)


def deblock(data):
    model = load_model("memnet-fast-deblock")
    for quality in (10, 20):
        gains = []
        for path in sorted((data / "Classic5").glob("*.png"))[:3]:
            clean = _gray(path, size=96)
            compressed = jpeg_compress(clean, quality)
            gains.append(psnr(restore_plane(model, compressed, device="cpu"), clean) - psnr(compressed, clean))
        report(f"memnet-fast-deblock q{quality}", gains)


def deblur(data):
    model = load_model("mhnet-deblur")
    for width in (2, 3):
        gains = []
        for i, path in enumerate(sorted((data / "Set12").glob("*.png"))[:3]):
            clean = _gray(path, size=96)
            blurred = add_noise(blur(clean, make_psf("gaussian", width)), DEBLUR_EVAL_NOISE, rng=np.random.default_rng(i))
            gains.append(psnr(restore_plane(model, blurred, device="cpu"), clean) - psnr(blurred, clean))
        report(f"mhnet-deblur {width} px", gains)


CASES = {"denoise": denoise, "sr": sr, "deblock": deblock, "deblur": deblur}

if __name__ == "__main__":
    import os

    root = Path(os.environ.get("NAPARI_MEMNET_DATA", ROOT.parent / "shared" / "data")) / "test"
    for case in sys.argv[1:] or list(CASES):
        CASES[case](root)
