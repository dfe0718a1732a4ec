"""restore / restore_iter / restore_plane on real tiny MemNets: layouts, dtypes,
progress, cancel, SR and every bad input."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch

from napari_memnet.core.axes import default_axes, parse_axes
from _nets import OutOfMemoryAbove, random_memnet
from napari_memnet.core.devices import available_devices, resolve_device, resolve_precision
from napari_memnet.restoration.eager import MAX_OUTPUT_ELEMENTS, restore_plane
from napari_memnet.restoration.events import Cancelled, RestoreResult, TileProgress
from napari_memnet.restoration.engine import Engine
from napari_memnet.api import restore, restore_iter
from napari_memnet.core.intensity import choose_intensity
from napari_memnet.commands.progressbar import ProgressBar
from napari_memnet.core.timefmt import format_seconds


@pytest.fixture(scope="module")
def net():
    return random_memnet(2, 2, 8, seed=3)


@pytest.fixture(scope="module")
def ident():
    """y = x exactly: the reconstruction conv is zero."""
    model = random_memnet(2, 2, 8, seed=4)
    with torch.no_grad():
        model.reconstruct.conv.weight.zero_()
        model.reconstruct.conv.bias.zero_()
    return model


def rng(seed=0):
    return np.random.default_rng(seed)


def u8(shape, seed=0):
    return (rng(seed).random(shape) * 255).astype(np.uint8)


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize("shape,axes", [((9, 12), None), ((3, 9, 12), None), ((2, 9, 12), "TYX"),
                                        ((2, 3, 9, 12), None), ((2, 2, 9, 12), "TZYX")])
def test_stacks_are_restored_plane_by_plane(net, shape, axes):
    img = u8(shape)
    out = restore(img, "denoise", model=net, axes=axes, device="cpu")
    assert out.shape == img.shape and out.dtype == np.uint8
    planes = img.reshape(-1, *shape[-2:])
    expected = np.stack([restore(p, "denoise", model=net, device="cpu") for p in planes]).reshape(shape)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("axes", ["YXC", "CYX"])
def test_two_channels_are_independent(net, axes):
    img = u8((10, 11, 2)) if axes == "YXC" else u8((2, 10, 11))
    out = restore(img, "denoise", model=net, axes=axes, device="cpu")
    assert out.shape == img.shape
    for c in range(2):
        sl = (..., c) if axes == "YXC" else (c,)
        np.testing.assert_array_equal(out[sl], restore(img[sl], "denoise", model=net, device="cpu"))


def test_channel_ranges_are_normalised_separately(net):
    img = np.stack([rng(1).random((12, 12)) * 10, rng(2).random((12, 12)) * 5000]).astype(np.float32)
    out = restore(img, "denoise", model=net, axes="CYX", device="cpu")
    for c in range(2):
        np.testing.assert_allclose(out[c], restore(img[c], "denoise", model=net, device="cpu"), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("channels", [3, 4])
def test_rgb_identity_model_round_trips(ident, channels):
    img = u8((13, 15, channels), seed=5)
    out = restore(img, "denoise", model=ident, device="cpu")
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def test_rgb_restores_luma_and_keeps_chroma_and_alpha():
    from napari_memnet.core.degrade import rgb_to_ycbcr

    net = random_memnet(2, 2, 8, seed=3, residual_std=4e-4)  # a gentle residual: few saturated pixels

    img = u8((16, 14, 4), seed=6)
    out = restore(img, "deblock", model=net, device="cpu")
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    ycc_in = rgb_to_ycbcr(img[..., :3].astype(np.float64) / 255)
    ycc_out = rgb_to_ycbcr(out[..., :3].astype(np.float64) / 255)
    y_expected = restore_plane(net, ycc_in[..., 0].astype(np.float32), device="cpu")
    assert np.abs(ycc_out[..., 0] - ycc_in[..., 0]).max() > 0.02  # the luma changed
    # up to uint8 rounding of R, G, B (and saturation at 0/255)
    assert np.median(np.abs(ycc_out[..., 0] - y_expected)) < 1.5 / 255
    assert np.median(np.abs(ycc_out[..., 1:] - ycc_in[..., 1:])) < 1.5 / 255


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 5), (17, 9)])
def test_tiny_and_odd_planes(net, shape):
    img = rng().random(shape).astype(np.float32)
    out = restore(img, "denoise", model=net, device="cpu", tile_size=4)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, restore_plane(net, img, device="cpu"), atol=1e-5)


# ------------------------------------------------------------------ intensities and dtypes
@pytest.mark.parametrize("dtype,scale_max", [(np.uint8, 255), (np.uint16, 65535), (np.int16, 3000),
                                             (np.float64, 1.0), (np.float32, 4000.0), (np.uint16, 200)])
def test_dtype_round_trip_with_identity_model(ident, dtype, scale_max):
    img = (rng(7).random((11, 13)) * scale_max).astype(dtype)
    out = restore(img, "denoise", model=ident, device="cpu")
    expected_dtype = np.dtype(dtype) if np.dtype(dtype).kind in "iu" else np.dtype(np.float32)
    assert out.dtype == expected_dtype
    if expected_dtype.kind in "iu":
        np.testing.assert_array_equal(out, img)
    else:
        np.testing.assert_allclose(out, img.astype(np.float32), rtol=1e-5, atol=1e-5 * scale_max)


def test_uint8_output_is_rounded_and_clipped(net):
    img = np.zeros((12, 12), np.uint8)
    img[:, 6:] = 255
    out = restore(img, "denoise", model=net, device="cpu")
    ref = restore_plane(net, img.astype(np.float32) / 255, device="cpu") * 255
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_intensity_rules():
    assert choose_intensity(np.zeros(3, np.uint8)).mode == "8bit"
    assert choose_intensity(np.array([0, 200], np.uint16)).mode == "8bit"
    assert choose_intensity(np.array([0.0, 0.5, 1.0])).mode == "unit"
    assert choose_intensity(np.array([0.0, 17.0, 255.0])).mode == "8bit"
    p = choose_intensity(np.arange(10001, dtype=np.uint16) * 6)
    assert p.mode == "percentile"
    assert p.low == pytest.approx(60.0) and p.high == pytest.approx(59940.0)
    const = choose_intensity(np.full(5, 1000.0))
    assert const.mode == "percentile" and const.span > 0


def test_input_is_never_modified(net):
    img = u8((2, 10, 10, 3))
    keep = img.copy()
    img.flags.writeable = False
    restore(img, "sr", scale=2, model=net, device="cpu")
    restore(img, "denoise", model=net, device="cpu", tile_size=4)
    np.testing.assert_array_equal(img, keep)
    f = rng().random((9, 9)) * 3000
    keep_f = f.copy()
    restore(f, "denoise", model=net, device="cpu")
    np.testing.assert_array_equal(f, keep_f)


def test_training_flag_of_callers_network_is_kept():
    model = random_memnet(2, 2, 8, seed=9).train()
    restore_plane(model, np.zeros((5, 5), np.float32), device="cpu")
    assert model.training


# ------------------------------------------------------------------ super-resolution
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_shape_and_identity_model_is_bicubic(ident, scale):
    from napari_memnet.core.degrade import imresize

    const = np.full((6, 7), 120, np.uint8)
    out = restore(const, "sr", scale=scale, model=ident, device="cpu", tile_size=8)
    assert out.shape == (6 * scale, 7 * scale) and out.dtype == np.uint8
    assert (out == 120).all()
    img = rng(scale).random((8, 9)).astype(np.float32)
    out = restore(img, "sr", scale=scale, model=ident, device="cpu")
    np.testing.assert_allclose(out, imresize(img.astype(np.float64), scale), atol=1e-5)


def test_sr_rgba_alpha_is_resized(ident):
    img = u8((5, 6, 4))
    img[..., 3] = 77
    out = restore(img, "sr", scale=2, model=ident, device="cpu")
    assert out.shape == (10, 12, 4)
    assert (out[..., 3] == 77).all()


# ------------------------------------------------------------------ progress, cancel, iterator
def test_progress_and_iterator(net):
    img = rng().random((2, 20, 20)).astype(np.float32)
    calls = []
    items = list(restore_iter(img, "denoise", model=net, device="cpu", tile_size=8,
                              progress=lambda d, t: calls.append((d, t))))
    events, result = items[:-1], items[-1]
    assert all(isinstance(e, TileProgress) for e in events)
    assert isinstance(result, RestoreResult)
    assert [e.done for e in events] == list(range(1, 19))  # 2 planes x 3x3 tiles
    assert all(e.total == 18 for e in events) and events[-1].eta_s == 0
    assert calls == [(e.done, e.total) for e in events]
    assert result.tile_size == 8 and result.device == "cpu" and result.precision == "fp32"
    assert result.model_name == "unsaved" and result.seconds > 0 and result.axes == "ZYX"
    np.testing.assert_array_equal(result.data, restore(img, "denoise", model=net, device="cpu", tile_size=8))


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_mid_run(net, kind):
    img = rng().random((30, 30)).astype(np.float32)
    event = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 2:
            event.set()

    cancel = event if kind == "event" else event.is_set
    with pytest.raises(Cancelled):
        restore(img, "denoise", model=net, device="cpu", tile_size=8, progress=progress, cancel=cancel)
    assert seen == [1, 2]


def test_out_of_memory_halves_the_tile(net):
    """A real engine whose module runs out of memory on windows wider than 30 px."""
    engine = Engine(net, device="cpu", tile_size=64)
    engine.module = OutOfMemoryAbove(engine.module, 30)
    img = rng().random((40, 40)).astype(np.float32)
    runner = engine.runner()
    out = runner.restore(img)
    assert runner.tile == 32  # 64 -> 32: two 20 px cores + 10 px halo = 30 px windows
    assert engine.tile == 64  # the retry is the runner's own (tests/test_pipeline.py: shared engines)
    np.testing.assert_allclose(out, restore_plane(net, img, device="cpu"), atol=1e-5)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.runner().restore(rng().random((80, 80)).astype(np.float32))


# ------------------------------------------------------------------ models
def test_model_by_name_and_path(net):
    from napari_memnet.models.files import save_model

    info = save_model(net, "tiny-denoise", task="denoise")
    img = u8((10, 10))
    a = restore(img, "denoise", model="tiny-denoise", device="cpu")
    b = restore(img, "denoise", model=str(info.path), device="cpu")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, restore(img, "denoise", model=net, device="cpu"))


def test_missing_default_model_is_a_clear_error(tmp_path, monkeypatch):
    from napari_memnet.models import files as modelfile
    from napari_memnet.models.files import ModelFileError

    monkeypatch.setattr(modelfile, "BUNDLED_DIR", tmp_path / "no-bundled-weights")  # a package without weights
    with pytest.raises(ModelFileError, match="no bundled model for task 'deblock'"):
        restore(u8((5, 5)), "deblock", device="cpu")


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("image,match", [
    (np.zeros((0, 5), np.float32), "empty"),
    (np.zeros((3, 0, 5), np.uint8), "empty"),
    (np.zeros(5, np.float32), "2 to 5 dimensions"),
    (np.zeros((1,) * 6 + (4, 4), np.float32), "2 to 5 dimensions"),
    (np.zeros((4, 4), bool), "dtype bool"),
    (np.zeros((4, 4), complex), "dtype complex"),
    (np.zeros((4, 4), object), "dtype object"),
])
def test_bad_images(net, image, match):
    with pytest.raises(ValueError, match=match):
        restore(image, "denoise", model=net, device="cpu")


def test_nan_and_inf_are_counted(net):
    img = np.zeros((6, 6), np.float32)
    img[0, :3] = np.nan
    img[1, 1] = np.inf
    with pytest.raises(ValueError, match="3 NaN and 1 infinite"):
        restore(img, "denoise", model=net, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        restore_plane(net, img)


@pytest.mark.parametrize("task,scale,match", [("inpaint", None, "unknown task"), ("sr", None, "needs a scale"),
                                              ("sr", 5, "scale"), ("sr", 1.5, "scale"),
                                              ("denoise", 2, "only to task 'sr'")])
def test_bad_task_or_scale(net, task, scale, match):
    with pytest.raises(ValueError, match=match):
        restore(u8((5, 5)), task, scale=scale, model=net)


def test_sr_output_size_limit(net):
    huge = np.broadcast_to(np.zeros(1, np.uint8), (30000, 30000))  # no memory behind it
    with pytest.raises(ValueError, match="2\\*\\*31"):
        restore(huge, "sr", scale=2, model=net)
    assert 30000 * 30000 * 4 > MAX_OUTPUT_ELEMENTS


@pytest.mark.parametrize("kwargs,match", [
    ({"axes": "ZYX"}, "name 3 axes"), ({"axes": "YY"}, "repeat"), ({"axes": "ZX"}, "'Y' and 'X'"),
    ({"tile_size": 0}, "tile_size"), ({"device": "tpu"}, "unknown device"),
    ({"precision": "fp8"}, "precision"), ({"progress": 3}, "progress"), ({"cancel": 3}, "cancel"),
])
def test_bad_options(net, kwargs, match):
    with pytest.raises(ValueError, match=match):
        restore(u8((5, 5)), "denoise", model=net, **kwargs)


def test_restore_plane_rejects_stacks_and_missing_model(net):
    with pytest.raises(ValueError, match="2-D"):
        restore_plane(net, np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="needs a model"):
        restore_plane(None, np.zeros((4, 4), np.float32))


# ------------------------------------------------------------------ axes, devices, progress bar
def test_default_axes_table():
    assert default_axes((5, 6)) == "YX"
    assert default_axes((5, 6, 3)) == "YXC" and default_axes((5, 6, 4)) == "YXC"
    assert default_axes((2, 5, 6)) == "ZYX" and default_axes((5, 6, 2)) == "ZYX"
    assert default_axes((2, 3, 5, 6)) == "TZYX" and default_axes((2, 5, 6, 3)) == "ZYXC"
    assert default_axes((2, 3, 2, 5, 6)) == "TZCYX" and default_axes((2, 3, 5, 6, 4)) == "TZYXC"
    layout = parse_axes("tzcyx", (2, 3, 4, 5, 6))
    assert layout.channel == 2 and not layout.is_rgb and layout.stack_axes == (0, 1)
    assert parse_axes("YXS", (5, 6, 3)).is_rgb


def test_devices():
    assert available_devices()[-1] == "cpu"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == available_devices()[0]
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bfloat16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu")
    if "cuda" not in available_devices():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda")


def test_bf16_on_cpu_stays_close():
    net = random_memnet(2, 2, 8, seed=3, residual_std=4e-4)
    img = rng().random((24, 24)).astype(np.float32)
    a = restore_plane(net, img, device="cpu", precision="fp32")
    b = restore_plane(net, img, device="cpu", precision="bf16")
    assert 0 < np.abs(a - b).max() < 0.02  # bf16 really ran, and stayed close


def test_progress_bar_text():
    stream = io.StringIO()
    with ProgressBar("img.png", 4, stream=stream, unit="tiles") as bar:
        for i in range(1, 5):
            bar.update(i)
    text = stream.getvalue()
    assert "img.png [" in text and "4/4 tiles 100%" in text
    assert format_seconds(3725) == "1:02:05" and format_seconds(None) == "--:--"


def test_automatic_precision_has_one_rule_for_restoring_and_training():
    assert resolve_precision("auto", "cpu") == resolve_precision("auto", "cpu", training=True) == "fp32"
    assert resolve_precision("auto", "mps") == "fp16" and resolve_precision("auto", "mps", training=True) == "fp32"
    assert resolve_precision("bf16", "cpu", training=True) == "bf16"
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    images = [np.random.default_rng(i).random((40, 40)).astype(np.float32) for i in range(2)]
    cfg = TrainConfig(arch={"blocks": 1, "recursions": 1, "channels": 4}, steps=1, batch_size=2, patch_size=16,
                      val_count=1, device="cpu")
    assert Trainer(cfg, clean=images).precision == resolve_precision("auto", "cpu", training=True)
