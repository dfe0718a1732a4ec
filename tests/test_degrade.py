"""Degradations: MATLAB bicubic imresize, AWGN, JPEG, MATLAB YCbCr."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_memnet.core.degrade import (
    add_noise,
    bicubic_degrade,
    imresize,
    jpeg_compress,
    modcrop,
    rgb_to_gray,
    rgb_to_y,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from napari_memnet.core.imresize import cubic, resize_weights


def _smooth_image(h=37, w=29, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0) + 0.05 * rng.standard_normal((h, w)))


# ------------------------------------------------------------------ imresize
def test_cubic_kernel_values():
    # Keys a = -0.5: 1 at 0, 0 at the integers, the textbook values between
    assert cubic(np.array([0.0, 1.0, 2.0, 2.5])).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert cubic(np.array([0.25, 0.75, 1.25, 1.75])).tolist() == [0.8671875, 0.2265625, -0.0703125, -0.0234375]


def test_imresize_hand_computed_upscale():
    # MATLAB's algorithm by hand for [1 2 3 4] -> 8 samples: output 1 samples
    # u = 0.75 with taps -1..2; taps -1, 0 mirror to 2, 1.
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize(row, output_shape=(1, 8))
    first = (0.2265625 + 0.8671875) * 1 + (-0.0234375 - 0.0703125) * 2
    second = (0.8671875 - 0.0703125) * 1 + 0.2265625 * 2 - 0.0234375 * 3
    assert out.shape == (1, 8)
    assert out[0, 0] == pytest.approx(first, abs=1e-12)  # 0.90625
    assert out[0, 1] == pytest.approx(second, abs=1e-12)  # 1.1796875
    # mirror symmetry: reversing the input reverses the output
    np.testing.assert_allclose(imresize(row[:, ::-1], output_shape=(1, 8)), out[:, ::-1], atol=1e-12)


def test_imresize_hand_computed_antialiased_downscale():
    # scale 1/2: kernel 0.5*cubic(x/2), 8 taps wide, u = 1.5 for output 1;
    # taps -2..5 with weights (w/2 of cubic at 1.75, 1.25, 0.75, 0.25, ...)
    # mirrored onto 3, 2, 1, 1, 2, 3, 4, 4.
    w = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2
    src = np.array([3, 2, 1, 1, 2, 3, 4, 4], dtype=float)
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize(row, output_shape=(1, 2))
    assert out[0, 0] == pytest.approx(float(w @ src), abs=1e-12)  # 1.4609375
    assert out[0, 1] == pytest.approx(5.0 - float(w @ src), abs=1e-12)


def test_weight_matrix_rows_sum_to_one_and_are_cached():
    for n_in, n_out in [(10, 5), (7, 21), (30, 10), (9, 9)]:
        m = resize_weights(n_in, n_out)
        assert m.shape == (n_out, n_in)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    assert resize_weights(30, 10) is resize_weights(30, 10)
    # same size, scale 1: the identity
    np.testing.assert_array_equal(resize_weights(9, 9), np.eye(9))


@pytest.mark.parametrize("scale", [1 / 3, 0.5, 0.7, 2.0, 3.0])
def test_imresize_constant_stays_constant(scale):
    img = np.full((2, 23, 17), 0.3125)
    out = imresize(img, scale)
    assert out.shape == (2, int(np.ceil(23 * scale - 1e-9)), int(np.ceil(17 * scale - 1e-9)))
    np.testing.assert_allclose(out, 0.3125, atol=1e-12)


def test_imresize_shapes_for_odd_sizes_up_then_down():
    img = _smooth_image(13, 7)
    up = imresize(img, 3)
    assert up.shape == (39, 21)
    down = imresize(up, 1 / 3)
    assert down.shape == (13, 7)
    assert imresize(img, 0.5).shape == (7, 4)  # MATLAB: ceil(0.5 * size)
    assert imresize(img, output_shape=(20, 11)).shape == (20, 11)


def test_bicubic_degrade_and_modcrop():
    img = _smooth_image(37, 29)
    for s in (2, 3, 4):
        hr = modcrop(img, s)
        assert hr.shape == (37 - 37 % s, 29 - 29 % s)
        assert np.shares_memory(hr, img)
        out = bicubic_degrade(hr, s)
        assert out.shape == hr.shape and out.dtype == hr.dtype
        assert not np.allclose(out, hr)
        np.testing.assert_allclose(out, imresize(imresize(hr, 1 / s), s))
        # low-pass: the error is small for a smooth image, larger for larger scales
        assert np.abs(out - hr).mean() < 0.05
    with pytest.raises(ValueError, match="not divisible"):
        bicubic_degrade(img, 2)


def test_imresize_torch_matches_numpy_and_keeps_dtype_device():
    img = _smooth_image(24, 18)
    batch = np.stack([img, img[::-1].copy()])[:, None]  # (2, 1, H, W)
    ref = imresize(batch, 1 / 3)
    t = torch.from_numpy(batch).to(torch.float32)
    out = imresize(t, 1 / 3)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == t.device
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    out64 = bicubic_degrade(torch.from_numpy(batch), 3)
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), bicubic_degrade(batch, 3), atol=1e-12)
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        cuda_out = imresize(t.cuda(), 1 / 3)
        assert cuda_out.is_cuda
        np.testing.assert_allclose(cuda_out.cpu().numpy(), ref, atol=1e-5)


def test_imresize_numpy_dtypes_and_input_untouched():
    img32 = _smooth_image().astype(np.float32)
    before = img32.copy()
    out = imresize(img32, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(img32, before)
    u8 = (img32 * 255).astype(np.uint8)
    out_u8 = imresize(u8, 0.5)
    assert out_u8.dtype == np.float64  # integers are resized in float, never rounded
    np.testing.assert_allclose(out_u8, imresize(u8.astype(np.float64), 0.5))


def test_imresize_bad_input():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        imresize(np.zeros(10), 2)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((4, 4)), -2)
    with pytest.raises(ValueError, match="floating-point"):
        imresize(torch.zeros(4, 4, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="positive integer"):
        modcrop(np.zeros((8, 8)), 1.5)


# ------------------------------------------------------------------ noise
def test_noise_statistics_and_determinism():
    img = np.full((256, 256), 0.5, dtype=np.float32)
    a = add_noise(img, 25, rng=np.random.default_rng(7))
    b = add_noise(img, 25, rng=np.random.default_rng(7))
    c = add_noise(img, 25, rng=np.random.default_rng(8))
    assert a.dtype == np.float32 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noise = a.astype(np.float64) - 0.5
    assert noise.std() == pytest.approx(25 / 255, rel=0.02)
    assert abs(noise.mean()) < 3 * (25 / 255) / 256
    assert np.all(img == 0.5)  # input untouched
    assert a.min() < 0.5 - 3 * 25 / 255  # not clipped
    np.testing.assert_array_equal(add_noise(img, 0, rng=np.random.default_rng(1)), img)


def test_noise_per_sample_sigma_numpy_and_torch():
    img = np.zeros((3, 1, 64, 64))
    sig = np.array([0.0, 10.0, 50.0])
    out = add_noise(img, sig, rng=np.random.default_rng(0))
    stds = out.reshape(3, -1).std(axis=1) * 255
    assert stds[0] == 0 and stds[1] == pytest.approx(10, rel=0.05) and stds[2] == pytest.approx(50, rel=0.05)

    t = torch.zeros(3, 1, 64, 64)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    o1 = add_noise(t, torch.tensor(sig), rng=g1)
    o2 = add_noise(t, sig, rng=g2)
    assert o1.dtype == torch.float32 and o1.device == t.device
    torch.testing.assert_close(o1, o2)
    tstd = o1.reshape(3, -1).std(dim=1) * 255
    assert float(tstd[0]) == 0 and float(tstd[2]) == pytest.approx(50, rel=0.05)
    assert torch.count_nonzero(t) == 0


def test_noise_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        add_noise(np.zeros((4, 4)), -1)
    with pytest.raises(ValueError, match=">= 0"):
        add_noise(torch.zeros(2, 1, 4, 4), torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="float image"):
        add_noise(np.zeros((4, 4), dtype=np.uint8), 10)
    with pytest.raises(ValueError, match="per-sample sigma of length 2"):
        add_noise(np.zeros((3, 1, 4, 4)), [1.0, 2.0])


# ------------------------------------------------------------------ JPEG
def test_jpeg_changes_image_and_keeps_dtype():
    img = _smooth_image(64, 48)
    img = np.clip(img, 0, 1)
    u8 = np.round(img * 255).astype(np.uint8)
    before = u8.copy()
    j10 = jpeg_compress(u8, 10)
    j90 = jpeg_compress(u8, 90)
    assert j10.dtype == np.uint8 and j10.shape == u8.shape
    np.testing.assert_array_equal(u8, before)
    err10 = np.abs(j10.astype(float) - u8).mean()
    err90 = np.abs(j90.astype(float) - u8).mean()
    assert err10 > err90 > 0
    f32 = jpeg_compress(img.astype(np.float32), 10)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32 * 255, j10, atol=1e-3)  # float goes through the same 8-bit image
    np.testing.assert_array_equal(jpeg_compress(u8, 10), j10)  # deterministic


def test_jpeg_bad_input():
    for q in (0, 101, 50.5, "high", True):
        with pytest.raises(ValueError, match="1..100"):
            jpeg_compress(np.zeros((16, 16), np.uint8), q)
    with pytest.raises(ValueError, match="2-D gray"):
        jpeg_compress(np.zeros((16, 16, 3), np.uint8), 50)
    with pytest.raises(ValueError, match="uint8"):
        jpeg_compress(np.zeros((16, 16), np.int32), 50)


# ------------------------------------------------------------------ colour
def test_ycbcr_known_values():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)
    ycc = rgb_to_ycbcr(rgb)
    assert ycc.dtype == np.uint8
    assert ycc[0, 0].tolist() == [235, 128, 128]
    assert ycc[0, 1].tolist() == [16, 128, 128]
    # red: 16 + 65.481 = 81.481 -> 81; 128 - 37.797 = 90.203 -> 90; 128 + 112 = 240
    assert ycc[0, 2].tolist() == [81, 90, 240]
    np.testing.assert_array_equal(rgb_to_y(rgb), ycc[..., 0])
    yf = rgb_to_y(np.array([1.0, 1.0, 1.0]))
    assert float(yf) == pytest.approx(235 / 255, abs=1e-12)
    # MATLAB rgb2gray weights, rounded to uint8
    assert rgb_to_gray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)).tolist() == [[76, 150, 29]]


def test_ycbcr_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.random((5, 7, 3))
    ycc = rgb_to_ycbcr(rgb)
    assert ycc.dtype == np.float64
    assert 16 / 255 - 1e-12 <= ycc[..., 0].min() and ycc[..., 0].max() <= 235 / 255 + 1e-12
    np.testing.assert_allclose(ycbcr_to_rgb(ycc), rgb, atol=1e-12)
    u8 = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(rgb_to_ycbcr(u8))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - u8).max() <= 2  # 8-bit rounding of YCbCr loses a little
    assert rgb_to_ycbcr(rgb.astype(np.float32)).dtype == np.float32


def test_colour_bad_input():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_y(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_ycbcr(np.zeros((4, 4, 3), dtype=np.int16))
