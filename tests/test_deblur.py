"""The deblur task: its PSFs and blurring, the training degradation (seeded, deterministic), the
evaluation protocol (seeded, deterministic, as documented in docs/evaluation.md), its levels in the
training config, and a few training steps of a tiny MHNet through the CLI engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_memnet.core.blur import PSF_KINDS, blur, draw_psf, make_psf, psf_radius
from napari_memnet.core.tasks import DEBLUR_EVAL_NOISE, TASKS
from napari_memnet.evaluate import evaluate, load_plane, parse_levels
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.data import TrainItem
from napari_memnet.training.sampler import PatchSampler, crop_size


def _moments(psf):
    r = psf.shape[0] // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (psf * y).sum(), (psf * x).sum(), (psf * (y * y + x * x)).sum()


@pytest.mark.parametrize("kind", PSF_KINDS)
@pytest.mark.parametrize("width", [0.7, 1.5, 3.0])
def test_psfs_are_normalised_centred_and_as_wide_as_their_width(kind, width):
    psf = make_psf(kind, width, angle=0.6)
    assert psf.shape == (2 * psf_radius(kind, width) + 1,) * 2
    assert math.isclose(psf.sum(), 1.0, abs_tol=1e-12) and psf.min() >= 0
    my, mx, second = _moments(psf)
    assert abs(my) < 1e-9 and abs(mx) < 1e-9
    # the width is the per-axis standard deviation: the 2-D second moment is 2 width^2 (a line: width^2),
    # plus what drawing on pixels adds: 1/12 px^2 per axis for the disk's pixel areas, 1/6 for the
    # streak's bilinear weights
    expected = {"gaussian": 2 * width**2, "disk": 2 * width**2 + 1 / 6, "motion": width**2 + 1 / 3}[kind]
    assert abs(second - expected) / expected < 0.05
    padded = make_psf(kind, width, angle=0.6, radius=psf_radius(kind, width) + 2)
    # the same PSF with zeros around it; a Gaussian keeps the tail beyond 3 sigma (< 1 % of its mass)
    np.testing.assert_allclose(padded[2:-2, 2:-2], psf, rtol=1e-2 if kind == "gaussian" else 1e-9, atol=1e-15)
    assert math.isclose(padded.sum(), 1.0, abs_tol=1e-12)
    with pytest.raises(ValueError, match="smaller"):
        make_psf(kind, width, radius=0)


def test_blur_is_a_convolution_with_symmetric_borders():
    rng = np.random.default_rng(0)
    img = rng.random((17, 22))
    psf = rng.random((5, 3))
    psf /= psf.sum()
    padded = np.pad(img, ((2, 2), (1, 1)), mode="symmetric")
    direct = np.zeros_like(img)
    for a in range(5):
        for b in range(3):  # convolution: the kernel is flipped against the image
            direct += psf[a, b] * padded[4 - a: 4 - a + 17, 2 - b: 2 - b + 22]
    np.testing.assert_allclose(blur(img, psf), direct, atol=1e-12)
    flat = np.full((9, 11), 0.3, np.float32)
    out = blur(flat, make_psf("disk", 2.0))
    assert out.dtype == np.float32 and np.allclose(out, 0.3, atol=1e-6)
    stack = rng.random((2, 12, 13))
    np.testing.assert_allclose(blur(stack, psf)[1], blur(stack[1], psf), atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        blur(img, np.ones((2, 3)) / 6)
    with pytest.raises(ValueError, match="float"):
        blur(np.zeros((4, 4), np.uint8), psf)


def test_the_training_distribution_is_seeded():
    a = [draw_psf(np.random.default_rng(5), 0.5, 3.5) for _ in range(3)]
    b = [draw_psf(np.random.default_rng(5), 0.5, 3.5) for _ in range(3)]
    assert a == b
    draws = [draw_psf(np.random.default_rng(i), 0.5, 3.5) for i in range(60)]
    assert {k for k, _, _ in draws} == set(PSF_KINDS)
    assert all(0.5 <= w <= 3.5 and 0 <= t < math.pi for _, w, t in draws)


def test_training_batches_are_blurred_noisy_and_deterministic(shared_data):
    from PIL import Image

    with Image.open(shared_data / "test" / "Set12" / "01.png") as im:
        img = np.asarray(im.convert("L"), np.float32) / 255.0
    items = [TrainItem("01", img)]
    levels = (1.0, 3.0)
    assert crop_size("deblur", 32, levels, False) == 32 + 2 * max(psf_radius(k, 3.0) for k in PSF_KINDS)

    def draw(seed):
        return PatchSampler(items, "deblur", levels, 32, seed, "cpu").batch(8)

    inp, tgt, widths = draw(3)
    inp2, tgt2, widths2 = draw(3)
    assert inp.shape == tgt.shape == (8, 1, 32, 32) and len(widths) == 8
    assert torch.equal(inp, inp2) and torch.equal(tgt, tgt2) and widths == widths2
    assert all(1.0 <= w <= 3.0 for w in widths)
    # blurred: less high-frequency energy than the clean targets (plus at most 2 % noise)
    grad = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean().item()  # noqa: E731
    assert grad(inp) < grad(tgt)
    assert not torch.equal(draw(4)[0], inp)


def test_evaluation_protocol_is_seeded_and_as_documented(shared_data):
    test = shared_data / "test"
    assert TASKS["deblur"].eval_datasets == ("Set12", "BSD68", "Classic5")
    assert parse_levels("deblur", "1, 2.5") == (1, 2.5)
    with pytest.raises(ValueError, match="PSF width"):
        parse_levels("deblur", "0")
    first = evaluate("deblur", test, datasets="Set12", levels=(2, 3), max_images=2, seed=0)
    again = evaluate("deblur", test, datasets="Set12", levels=(2, 3), max_images=2, seed=0)
    assert first == again
    assert first[0]["baseline_psnr"] > first[1]["baseline_psnr"]  # wider blur, lower PSNR
    other_seed = evaluate("deblur", test, datasets="Set12", levels=(2,), max_images=2, seed=1)
    assert other_seed[0]["baseline_psnr"] != first[0]["baseline_psnr"]  # the noise follows the seed

    # one image by hand: Gaussian PSF of sigma 2, then 1 % noise from the per-image seeded generator
    from napari_memnet.core.degrade import add_noise
    from napari_memnet.core.metrics import psnr
    from napari_memnet.evaluate import _noise_seed, list_images

    path = list_images(test / "Set12")[0]
    clean = load_plane(path, "deblur").astype(np.float64) / 255.0
    degraded = add_noise(blur(clean, make_psf("gaussian", 2)), DEBLUR_EVAL_NOISE, rng=_noise_seed(0, "Set12", path.name))
    one = evaluate("deblur", test, datasets="Set12", levels=(2,), max_images=1, seed=0)[0]
    assert math.isclose(one["baseline_psnr"], psnr(degraded, clean), rel_tol=1e-12)

    identity = evaluate("deblur", test, datasets="Set12", levels=(2,), max_images=1, restore_fn=lambda x: x)[0]
    assert math.isclose(identity["psnr"], identity["baseline_psnr"], rel_tol=1e-6)


def test_config_levels_and_the_mhnet_defaults():
    cfg = TrainConfig(task="deblur", architecture="mhnet")
    assert cfg.levels == TASKS["deblur"].train_levels
    assert cfg.resolved_val_levels() == (1, 2, 3)
    assert cfg.resolved_arch["channels"] == 16 and cfg.resolved_lr == 1e-3
    assert TrainConfig(task="deblur", levels=(2,)).levels == (2.0, 2.0)
    with pytest.raises(ValueError, match="PSF width range"):
        TrainConfig(task="deblur", levels=(0, 2))


def test_a_tiny_mhnet_trains_on_deblur_and_restores(shared_data, tmp_path):
    from napari_memnet import load_model, restore
    from napari_memnet.cli import main

    out = tmp_path / "run"
    code = main(["train", "--task", "deblur", "--arch", "mhnet", "--channels", "8", "--depth", "2",
                 "--clean-dir", str(shared_data / "test" / "Set12"), "--levels", "0.5,2", "--steps", "3",
                 "--batch", "4", "--patch", "24", "--val-count", "2", "--validate-every", "3",
                 "--out-dir", str(out), "--name", "tiny-deblur", "--threads", "1"])
    assert code == 0
    model = load_model(out / "tiny-deblur.safetensors")
    assert model.architecture == "mhnet" and model.task == "deblur"
    assert model.card["levels"] == {"psf_width_range": [0.5, 2.0]}
    assert model.card["training"]["validation_psnr_after"] is not None
    image = np.asarray(blur(np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50), make_psf("disk", 1.0)))
    result = restore(image, "deblur", model=str(out / "tiny-deblur.safetensors"), device="cpu")
    assert result.shape == image.shape and np.isfinite(result).all()


def test_fine_tune_builds_an_mhnet_from_the_api(shared_data, tmp_path):
    from PIL import Image

    from napari_memnet import fine_tune

    with Image.open(shared_data / "test" / "Set12" / "05.png") as im:
        img = np.asarray(im.convert("L"), np.float32) / 255.0
    model = fine_tune([img[:128, :128], img[128:, 128:]], task="deblur", name="api-deblur", levels=(1, 2),
                      architecture={"architecture": "mhnet", "channels": 8, "depth": 1}, steps=2, batch_size=2,
                      patch_size=24, validation=1, out_dir=tmp_path / "run", model_dir=tmp_path / "models")
    assert model.architecture == "mhnet" and model.network.config.depth == 1 and model.task == "deblur"
    assert model.card["training"]["config"]["lr"] is None and model.card["training"]["steps"] == 2
