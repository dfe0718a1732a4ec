"""Sample data: each sample is a real degraded image plus its clean reference."""

from __future__ import annotations

import numpy as np
import pytest

from napari_memnet import sample_data
from napari_memnet.core.degrade import imresize, jpeg_compress
from napari_memnet.core.metrics import psnr

SAMPLES = [sample_data.noisy_sample, sample_data.lowres_sample, sample_data.jpeg_sample,
           sample_data.blurry_sample, sample_data.cells_sample]


def test_bundled_image_is_small_and_documented():
    path = sample_data.ASTRONAUT
    assert path.stat().st_size < 200_000
    readme = (path.parent / "README.md").read_text()
    assert path.name in readme and "public domain" in readme
    img = sample_data.astronaut_uint8()
    assert img.shape == (256, 256) and img.dtype == np.uint8
    assert img.std() > 30  # a real photograph, not a flat image


@pytest.mark.parametrize("make", SAMPLES, ids=lambda f: f.__name__)
def test_each_sample_has_reference_and_degraded_layer(make):
    layers = make()
    assert len(layers) == 2
    (clean, clean_meta, clean_kind), (degraded, meta, kind) = layers
    assert clean_kind == kind == "image"
    assert "clean reference" in clean_meta["name"]
    assert meta["name"] != clean_meta["name"]
    assert np.isfinite(degraded).all()
    assert degraded.ndim == clean.ndim == 2


def test_noisy_sample_is_sigma_25():
    (clean, _, _), (noisy, _, _) = sample_data.noisy_sample()
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1  # a real 0..1 image
    mid = (clean > 0.3) & (clean < 0.7)  # where clipping cannot matter (25/255 < 0.1, 3 sigma)
    residual = (noisy[mid].astype(np.float64) - clean[mid]) * 255.0
    assert mid.sum() > 10_000
    assert abs(residual.std() - 25.0) < 0.75
    assert abs(residual.mean()) < 0.75
    # deterministic: the same image each time it is opened
    np.testing.assert_array_equal(noisy, sample_data.noisy_sample()[1][0])


def test_lowres_sample_is_bicubic_half_size_and_overlays():
    (clean, _, _), (low, meta, _) = sample_data.lowres_sample()
    assert low.shape == (clean.shape[0] // 2, clean.shape[1] // 2)
    np.testing.assert_allclose(low, np.clip(imresize(clean, 0.5), 0, 1), atol=1e-6)
    assert tuple(meta["scale"]) == (2, 2)
    # low-res pixel 0 covers clean pixels 0 and 1: its centre is at 0.5
    assert tuple(meta["translate"]) == (0.5, 0.5)


def test_jpeg_sample_is_quality_10():
    (clean, _, _), (jpeg, _, _) = sample_data.jpeg_sample()
    assert jpeg.dtype == np.uint8
    np.testing.assert_array_equal(jpeg, jpeg_compress(clean, 10))
    quality = psnr(jpeg.astype(np.float64), clean.astype(np.float64), data_range=255)
    assert 22 < quality < 32  # visibly blocky, still the same picture


def test_blurry_sample_is_the_deblur_protocol_at_width_2():
    from napari_memnet.core.degrade import blur, make_psf

    (clean, _, _), (blurred, meta, _) = sample_data.blurry_sample()
    assert blurred.dtype == np.float32 and blurred.min() >= 0 and blurred.max() <= 1
    residual = blurred.astype(np.float64) - blur(clean.astype(np.float64), make_psf("gaussian", 2.0))
    mid = (clean > 0.2) & (clean < 0.8)  # away from clipping
    assert abs(residual[mid].std() * 255 - 2.55) < 0.2  # 1 % noise on top of the blur
    assert "sigma 2" in meta["metadata"]["degradation"]
    np.testing.assert_array_equal(blurred, sample_data.blurry_sample()[1][0])  # deterministic


def test_cells_sample_looks_like_noisy_cells():
    (clean, _, _), (noisy, _, _) = sample_data.cells_sample()
    background = clean < 0.12
    assert 0.3 < background.mean() < 0.9  # cells on a dark background
    assert clean.max() > 0.5
    noise_db = psnr(noisy, clean)
    assert 15 < noise_db < 30


@pytest.mark.gui
def test_samples_open_in_napari(make_napari_viewer):
    """Through napari's sample menu machinery: each sample adds two layers."""
    viewer = make_napari_viewer()
    for key in ("noisy", "lowres", "jpeg", "blurry", "cells"):
        before = len(viewer.layers)
        viewer.open_sample("napari-memnet", key)
        assert len(viewer.layers) == before + 2, key
    low = viewer.layers["astronaut low-res x2"]
    assert tuple(low.scale) == (2, 2)
