"""Training data: loading, checks by name, validation split, patches, augmentation, degradations."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_memnet.training.config import TrainConfig
from napari_memnet.training.data import prepare_data
from napari_memnet.training.sampler import PatchSampler, augment, crop_size


@pytest.fixture(scope="module")
def train400(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))[:5]
    assert len(files) == 5
    return files


@pytest.fixture(scope="module")
def t91(shared_data):
    return sorted((shared_data / "train" / "T91").glob("*.png"))[:4]


def _cfg(**kw):
    base = dict(task="denoise", levels=(10, 30), val_count=1, val_crop=48, patch_size=31)
    base.update(kw)
    return TrainConfig(**base)


def test_validation_holds_out_whole_images_and_is_fixed_by_seed(train400):
    cfg = _cfg(val_count=2)
    data = prepare_data(cfg, clean=train400)
    train_names = {it.name for it in data.train}
    val_names = {v.name for v in data.val}
    assert len(train_names) == 3 and len(val_names) == 2
    assert not train_names & val_names
    assert {v.level for v in data.val} == {15.0, 25.0}  # paper levels inside 10..30
    again = prepare_data(cfg, clean=train400)
    for a, b in zip(data.val, again.val):
        assert a.name == b.name and a.level == b.level
        np.testing.assert_array_equal(a.input, b.input)
    noisy = data.val[0]
    resid = noisy.input - noisy.target
    assert abs(resid.std() * 255 - noisy.level) < 2.5  # the fixed noise has the validation sigma


def test_explicit_validation_folder_and_color_conversion(tmp_path, train400, t91):
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    rgb = np.asarray(Image.open(t91[0]).convert("RGB"))
    Image.fromarray(rgb).save(val_dir / "colour.png")
    data = prepare_data(_cfg(val_crop=0), clean=train400[:2], validation=val_dir)
    assert len(data.train) == 2
    assert {v.name for v in data.val} == {"colour.png"}
    from napari_memnet.degrade import rgb_to_gray

    expected = rgb_to_gray(rgb.astype(np.float64) / 255)
    np.testing.assert_allclose(data.val[0].target, expected, atol=1e-6)
    # for SR the colour image becomes the Y channel of YCbCr
    data_sr = prepare_data(_cfg(task="sr", levels=(2, 3)), clean=train400[:2], validation=val_dir)
    from napari_memnet.degrade import rgb_to_y

    y = rgb_to_y(rgb.astype(np.float32) / 255)
    target = data_sr.val[0].target
    assert target.shape[0] % 6 == 0 and target.shape[1] % 6 == 0  # cropped to a multiple of every scale
    h, w = y.shape
    oy, ox = (h - target.shape[0]) // 2, (w - target.shape[1]) // 2
    np.testing.assert_allclose(target, y[oy:oy + target.shape[0], ox:ox + target.shape[1]], atol=1e-6)


def test_augment_gives_the_eight_dihedral_transforms():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    outs = [augment(a, k) for k in range(8)]
    keys = {o.tobytes() + bytes(o.shape) for o in outs}
    assert len(keys) == 8
    assert all(sorted(o.ravel()) == sorted(a.ravel()) for o in outs)


@pytest.mark.parametrize("task, levels", [("denoise", (25, 25)), ("sr", (2, 3, 4)), ("deblock", (10, 10))])
def test_sampler_batches_have_the_degradation_of_their_task(train400, task, levels):
    import torch

    from napari_memnet.metrics import psnr

    cfg = _cfg(task=task, levels=levels, val_count=0)
    data = prepare_data(cfg, clean=train400[:2], min_size=crop_size(task, 31, cfg.levels, False))
    sampler = PatchSampler(data.train, task, cfg.levels, 31, seed=3, device="cpu")
    inp, tgt, lv = sampler.batch(12)
    assert inp.shape == tgt.shape == (12, 1, 31, 31) and inp.dtype == torch.float32
    assert len(lv) == 12
    x, y = inp.numpy()[:, 0], tgt.numpy()[:, 0]
    if task == "denoise":
        assert abs((x - y).std() * 255 - 25) < 1.0
    elif task == "sr":
        assert set(lv) <= {2, 3, 4}
        for j in range(12):  # blurrier than the target, but close to it
            assert 18 < psnr(x[j], y[j]) < 60
    else:
        assert set(lv) == {10}
        assert np.allclose(y * 255, np.round(y * 255), atol=1e-4)  # deblock targets are on the 8-bit grid
        assert 20 < np.mean([psnr(x[j], y[j]) for j in range(12)]) < 45
    # the same seed draws the same batch
    again = PatchSampler(data.train, task, cfg.levels, 31, seed=3, device="cpu").batch(12)
    torch.testing.assert_close(again[0], inp, rtol=0, atol=0)


def test_pair_patches_stay_registered(tmp_path, train400):
    clean = [np.asarray(Image.open(p), np.float32) / 255 for p in train400[:2]]
    pairs = [(c + 0.125, c) for c in clean]  # input = target + a constant: any misregistration shows
    data = prepare_data(_cfg(val_count=0), pairs=pairs)
    sampler = PatchSampler(data.train, "denoise", (25, 25), 31, seed=0, device="cpu")
    inp, tgt, _ = sampler.batch(16)
    np.testing.assert_allclose((inp - tgt).numpy(), 0.125, atol=1e-6)


def test_sr_pairs_low_res_is_upsampled_to_the_clean_size(tmp_path, train400):
    from napari_memnet.degrade import imresize

    hr = np.asarray(Image.open(train400[0]), np.float32)[:120, :120] / 255
    lr = imresize(hr, 0.5)
    data = prepare_data(_cfg(task="sr", levels=(2,), val_count=0), pairs=[(lr, hr)])
    (item,) = data.train
    assert item.input.shape == hr.shape
    np.testing.assert_allclose(item.input, imresize(lr, output_shape=hr.shape), atol=1e-6)


def test_bad_pairs_are_refused_by_name_before_training(tmp_path, train400):
    import tifffile

    deg, cln = tmp_path / "degraded", tmp_path / "clean"
    deg.mkdir()
    cln.mkdir()
    img = np.asarray(Image.open(train400[0]))
    Image.fromarray(img).save(cln / "good.png")
    Image.fromarray(img).save(deg / "good.png")
    Image.fromarray(img).save(cln / "orphan_clean.png")
    Image.fromarray(img).save(deg / "orphan_degraded.png")
    Image.fromarray(img).save(cln / "shape.png")
    Image.fromarray(img[:100, :90]).save(deg / "shape.png")
    bad = img.astype(np.float32) / 255
    bad[5, 5] = np.nan
    tifffile.imwrite(deg / "nan.tif", bad)
    Image.fromarray(img).save(cln / "nan.png")
    Image.fromarray(img[:20, :20]).save(cln / "tiny.png")
    Image.fromarray(img[:20, :20]).save(deg / "tiny.png")
    with pytest.raises(ValueError) as err:
        prepare_data(_cfg(val_count=0), pairs=(deg, cln))
    msg = str(err.value)
    for name in ("orphan_clean.png", "orphan_degraded.png", "shape", "nan", "tiny"):
        assert name in msg, (name, msg)
    assert "90x100" in msg and "non-finite" in msg and "smaller than the 31x31" in msg
    assert "good" not in msg


def test_source_must_be_given_once(train400):
    with pytest.raises(ValueError, match="exactly one training source"):
        prepare_data(_cfg(), clean=None, pairs=None)
    with pytest.raises(ValueError, match="no such file or folder"):
        prepare_data(_cfg(), clean=[train400[0].parent / "missing.png"])
