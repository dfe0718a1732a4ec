"""PSNR and SSIM (Wang et al. 2004, ssim_index.m)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_memnet.core.metrics import gaussian_window, psnr, ssim


def _image(h=40, w=36, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(0.5 + 0.3 * np.sin(yy / 4.0 + xx / 9.0) + 0.05 * rng.standard_normal((h, w)), 0, 1)


def test_identical_images():
    img = _image()
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    u8 = np.round(img * 255).astype(np.uint8)
    assert psnr(u8, u8, data_range=255) == math.inf


@pytest.mark.parametrize("offset", [1 / 255, 0.01, 0.1])
def test_constant_offset_gives_analytic_psnr(offset):
    img = _image()
    assert psnr(img + offset, img) == pytest.approx(-20 * math.log10(offset), abs=1e-9)
    # the same on the 8-bit scale with data_range 255
    assert psnr(img * 255 + offset * 255, img * 255, data_range=255) == pytest.approx(
        -20 * math.log10(offset), abs=1e-9)


def test_psnr_shave_ignores_the_border():
    img = _image()
    other = img.copy()
    other[:3, :] += 0.2
    other[:, -2:] -= 0.2
    assert psnr(other, img) < 30
    assert psnr(other, img, shave=3) == math.inf
    assert ssim(other, img, shave=3) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_analytic():
    # uniform images: variances and covariance vanish, SSIM = (2ab + C1)/(a^2 + b^2 + C1)
    a, b = 0.2, 0.6
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((20, 20), a), np.full((20, 20), b)) == pytest.approx(expected, rel=1e-9)


def _ssim_naive(x, y, data_range):
    """ssim_index.m written out window by window (no separability, no tricks)."""
    size, sigma = 11, 1.5
    t = np.arange(size) - 5
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * px * px).sum() - mx * mx
            vy = (win * py * py).sum() - my * my
            cxy = (win * px * py).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_window_by_window_reference():
    x = _image(17, 15, seed=1) * 255
    y = np.clip(x + np.random.default_rng(2).normal(0, 12, x.shape), 0, 255)
    got = ssim(y, x, data_range=255)
    assert got == pytest.approx(_ssim_naive(y, x, 255), abs=1e-12)
    # scale invariance: the same images on 0..1 with data_range 1
    assert ssim(y / 255, x / 255) == pytest.approx(got, abs=1e-12)
    assert ssim(x, y, data_range=255) == pytest.approx(got, abs=1e-12)  # symmetric


def test_ssim_decreases_with_noise():
    img = _image(64, 64)
    rng = np.random.default_rng(0)
    values = [ssim(img + rng.normal(0, s, img.shape), img) for s in (0.01, 0.05, 0.2)]
    assert 1 > values[0] > values[1] > values[2] > 0


def test_gaussian_window():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0)
    assert g[5] == g.max() and g[0] == pytest.approx(g[10])
    assert g[4] / g[5] == pytest.approx(math.exp(-1 / (2 * 1.5**2)))


def test_metric_bad_input():
    img = _image()
    with pytest.raises(ValueError, match="same shape"):
        psnr(img, img[:-1])
    with pytest.raises(ValueError, match="2-D"):
        ssim(np.stack([img, img]), np.stack([img, img]))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(img[:10, :10], img[:10, :10])
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(img, img, shave=20)
    with pytest.raises(ValueError, match="shave"):
        psnr(img, img, shave=-1)
    with pytest.raises(ValueError, match="data_range"):
        psnr(img, img, data_range=0)
    with pytest.raises(ValueError, match="real-valued"):
        psnr(img.astype(complex), img)
