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
    from napari_memnet.core.degrade import rgb_to_gray

    expected = rgb_to_gray(rgb.astype(np.float64) / 255)
    np.testing.assert_allclose(data.val[0].target, expected, atol=1e-6)
    # for SR the colour image becomes the Y channel of YCbCr
    data_sr = prepare_data(_cfg(task="sr", levels=(2, 3)), clean=train400[:2], validation=val_dir)
    from napari_memnet.core.degrade import rgb_to_y

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

    from napari_memnet.core.metrics import psnr

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
        # each input is a cut of its image's whole-image degradation, computed once per image and scale
        from napari_memnet.core.degrade import bicubic_degrade, modcrop

        for (i, s), low in sampler.sr_inputs._cache.items():
            target = modcrop(data.train[i].target, s)
            np.testing.assert_allclose(low, bicubic_degrade(target, s), atol=1e-6)
        assert len(sampler.sr_inputs._cache) <= 2 * 3  # 2 images x 3 scales at most, however many batches
        sampler.batch(12)
        assert len(sampler.sr_inputs._cache) <= 2 * 3
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
    data = prepare_data(_cfg(val_count=0), pairs=pairs, intensity="as-is")  # floats as they are, over 1 too
    sampler = PatchSampler(data.train, "denoise", (25, 25), 31, seed=0, device="cpu")
    inp, tgt, _ = sampler.batch(16)
    np.testing.assert_allclose((inp - tgt).numpy(), 0.125, atol=1e-6)


def test_sr_pairs_low_res_is_upsampled_to_the_clean_size(tmp_path, train400):
    from napari_memnet.core.degrade import imresize

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


# ------------------------------------------------------------------------- intensities of image files
@pytest.fixture(scope="module")
def bsd_crop(shared_data):
    """A 96x96 crop of a real BSD68 image (uint8)."""
    return np.asarray(Image.open(shared_data / "test" / "BSD68" / "test003.png").convert("L"))[100:196, 150:246]


def _uint16_pair(crop):
    """A microscopy-like uint16 pair from a real image: clean on 200..3000, degraded = clean + noise."""
    clean = np.round(200 + crop.astype(np.float64) / 255 * 2800).astype(np.uint16)
    rng = np.random.default_rng(5)
    noisy = clean + rng.normal(0, 150, clean.shape)
    return np.clip(np.round(noisy), 0, 65535).astype(np.uint16), clean


@pytest.fixture
def uint16_folders(tmp_path, bsd_crop):
    import tifffile

    deg, cln = tmp_path / "degraded16", tmp_path / "clean16"
    deg.mkdir()
    cln.mkdir()
    noisy, clean = _uint16_pair(bsd_crop)
    tifffile.imwrite(deg / "cell.tif", noisy)
    tifffile.imwrite(cln / "cell.tif", clean)
    return deg, cln, noisy, clean


def test_uint16_folder_pairs_get_restores_map_of_the_degraded_image(uint16_folders):
    from napari_memnet.core.intensity import choose_intensity

    deg, cln, noisy, clean = uint16_folders
    (item,) = prepare_data(_cfg(val_count=0), pairs=(deg, cln)).train
    imap = choose_intensity(noisy)  # what restore applies to the degraded image
    assert imap.mode == "percentile"
    np.testing.assert_array_equal(item.input, imap.forward(noisy))
    # the clean image shares the degraded image's map (not its own), so the pair stays related
    assert choose_intensity(clean) != imap
    np.testing.assert_array_equal(item.target, imap.forward(clean))
    # on restore's 0..1 scale, not divided by 65535
    lo, hi = np.percentile(item.input, [0.1, 99.9])
    assert abs(lo) < 1e-6 and abs(hi - 1) < 1e-6
    assert item.target.max() > 10 * (clean.max() / 65535)  # the old rule gave at most clean.max() / 65535


def test_uint16_clean_folder_is_mapped_by_its_own_restore_map(uint16_folders):
    from napari_memnet.core.intensity import choose_intensity

    _deg, cln, _noisy, clean = uint16_folders
    (item,) = prepare_data(_cfg(val_count=0), clean=cln).train
    np.testing.assert_array_equal(item.target, choose_intensity(clean).forward(clean))


def test_uint8_folders_keep_x_over_255(tmp_path, train400):
    deg, cln = tmp_path / "d8", tmp_path / "c8"
    deg.mkdir()
    cln.mkdir()
    rng = np.random.default_rng(1)
    raws = {}
    for path in train400[:2]:
        img = np.asarray(Image.open(path))[:64, :64]
        noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(cln / path.name)
        Image.fromarray(noisy).save(deg / path.name)
        raws[path.stem] = (noisy, img)

    def old(x):  # the loader's rule before restore's mapping: float64 x / 255, as float32
        return (x.astype(np.float64) / 255).astype(np.float32)

    for item in prepare_data(_cfg(val_count=0), pairs=(deg, cln)).train:
        noisy, img = raws[item.name]
        np.testing.assert_array_equal(item.input, old(noisy))
        np.testing.assert_array_equal(item.target, old(img))
    for item in prepare_data(_cfg(val_count=0), clean=cln).train:
        np.testing.assert_array_equal(item.target, old(raws[item.name.removesuffix(".png")][1]))


def test_float_degraded_with_an_8bit_clean_png_are_put_in_one_unit(tmp_path, bsd_crop):
    """A noisy float TIFF on 0..1 (unclipped: percentile-mapped by restore) beside a uint8 clean PNG."""
    import tifffile

    from napari_memnet.core.intensity import choose_intensity

    deg, cln = tmp_path / "df", tmp_path / "c8"
    deg.mkdir()
    cln.mkdir()
    noisy = bsd_crop.astype(np.float32) / 255 + np.random.default_rng(2).normal(0, 0.1, bsd_crop.shape).astype(np.float32)
    tifffile.imwrite(deg / "a.tif", noisy)
    Image.fromarray(bsd_crop).save(cln / "a.png")
    (item,) = prepare_data(_cfg(val_count=0), pairs=(deg, cln)).train
    imap = choose_intensity(noisy)
    assert imap.mode == "percentile"
    np.testing.assert_array_equal(item.input, imap.forward(noisy))
    np.testing.assert_allclose(item.target, imap.forward(bsd_crop.astype(np.float64) / 255), atol=1e-5)


def test_intensity_problems_are_refused_by_file_name(tmp_path, bsd_crop):
    import tifffile

    flat = tmp_path / "flat"
    flat.mkdir()
    tifffile.imwrite(flat / "constant.tif", np.full((64, 64), 1000, np.uint16))
    with pytest.raises(ValueError, match=r"constant\.tif: its 0\.1st and 99\.9th percentiles are both 1000"):
        prepare_data(_cfg(val_count=0), clean=flat)
    deg, cln = tmp_path / "deg", tmp_path / "cln"
    deg.mkdir()
    cln.mkdir()
    tifffile.imwrite(deg / "flat.tif", np.full((64, 64), 700, np.uint16))
    tifffile.imwrite(cln / "flat.tif", _uint16_pair(bsd_crop)[1][:64, :64])
    Image.fromarray(bsd_crop).save(deg / "mixed.png")  # 8-bit degraded, wide-range uint16 clean
    tifffile.imwrite(cln / "mixed.tif", _uint16_pair(bsd_crop)[1] * 16)
    with pytest.raises(ValueError) as err:
        prepare_data(_cfg(val_count=0), pairs=(deg, cln))
    msg = str(err.value)
    assert "flat (flat.tif, flat.tif): degraded image: its 0.1st and 99.9th percentiles are both 700" in msg
    assert "mixed (mixed.png, mixed.tif): the degraded image is uint8 on the 8-bit (0..255) scale" in msg


def test_model_fine_tuned_on_uint16_folders_restores_uint16_in_range(uint16_folders):
    import napari_memnet

    deg, cln, noisy, _clean = uint16_folders
    napari_memnet.fine_tune(pairs=(deg, cln), task="denoise", architecture={"blocks": 1, "recursions": 1, "channels": 8},
                            steps=3, batch_size=4, patch_size=24, name="u16-denoiser", validation=0, threads=1)
    out = napari_memnet.restore(noisy, "denoise", model="u16-denoiser", device="cpu")
    assert out.dtype == np.uint16 and out.shape == noisy.shape
    lo, hi = np.percentile(noisy, [1, 99])
    assert lo <= np.median(out) <= hi  # in the input's range, not near zero


# ------------------------------------------------------------------------- intensities of arrays
def test_uint16_array_pairs_get_restores_map_of_the_degraded_array(bsd_crop):
    from napari_memnet.core.intensity import choose_intensity

    noisy, clean = _uint16_pair(bsd_crop)
    v_noisy, v_clean = _uint16_pair(bsd_crop[::-1].copy())
    copies = [a.copy() for a in (noisy, clean, v_noisy, v_clean)]
    data = prepare_data(_cfg(val_crop=0), pairs=[(noisy, clean)], validation=[(v_noisy, v_clean)])
    (item,), (val,) = data.train, data.val
    imap = choose_intensity(noisy)  # what restore applies to the degraded array
    assert imap.mode == "percentile" and choose_intensity(clean) != imap
    np.testing.assert_array_equal(item.input, imap.forward(noisy))
    np.testing.assert_array_equal(item.target, imap.forward(clean))  # the degraded array's map, for both
    vmap = choose_intensity(v_noisy)  # held-out pairs: their own degraded array's map
    np.testing.assert_array_equal(val.input, vmap.forward(v_noisy))
    np.testing.assert_array_equal(val.target, vmap.forward(v_clean))
    for a, b in zip((noisy, clean, v_noisy, v_clean), copies):
        np.testing.assert_array_equal(a, b)  # inputs never modified
    # clean arrays without partners: each by its own map
    (own,) = prepare_data(_cfg(val_count=0), clean=[clean]).train
    np.testing.assert_array_equal(own.target, choose_intensity(clean).forward(clean))


def test_uint8_arrays_keep_x_over_255(bsd_crop):
    noisy = np.clip(bsd_crop + np.random.default_rng(3).normal(0, 20, bsd_crop.shape), 0, 255).astype(np.uint8)

    def old(x):  # the loader's rule for uint8 before restore's mapping: float64 x / 255, as float32
        return (x.astype(np.float64) / 255).astype(np.float32)

    for rule in ("restore", "as-is"):
        (item,) = prepare_data(_cfg(val_count=0), pairs=[(noisy, bsd_crop)], intensity=rule).train
        np.testing.assert_array_equal(item.input, old(noisy))
        np.testing.assert_array_equal(item.target, old(bsd_crop))
        (own,) = prepare_data(_cfg(val_count=0), clean=[noisy], intensity=rule).train
        np.testing.assert_array_equal(own.target, old(noisy))


def test_as_is_takes_already_mapped_floats_as_they_are(bsd_crop):
    """Floats already on the engine's scale (a percentile map does not clip: a little outside 0..1)."""
    from napari_memnet.core.intensity import choose_intensity

    clean = (bsd_crop.astype(np.float32) - 20) / 220  # about -0.09..1.07
    noisy = clean + np.random.default_rng(4).normal(0, 0.1, clean.shape).astype(np.float32)
    assert noisy.min() < 0 and noisy.max() > 1
    (item,) = prepare_data(_cfg(val_count=0), pairs=[(noisy, clean)], intensity="as-is").train
    np.testing.assert_array_equal(item.input, noisy)
    np.testing.assert_array_equal(item.target, clean)
    own = prepare_data(_cfg(val_count=0), clean=[clean], validation=[noisy], intensity="as-is")
    np.testing.assert_array_equal(own.train[0].target, clean)
    np.testing.assert_array_equal(own.val[0].target, noisy[24:72, 24:72])  # the centre 48x48 (val_crop)
    # by default the same floats are mapped again, as restore would map them (by the noisy one's percentiles)
    (again,) = prepare_data(_cfg(val_count=0), pairs=[(noisy, clean)]).train
    imap = choose_intensity(noisy)
    assert imap.mode == "percentile"
    np.testing.assert_array_equal(again.input, imap.forward(noisy))
    assert not np.array_equal(again.input, noisy)


def test_array_intensity_problems_are_refused_by_name(bsd_crop):
    noisy, clean = _uint16_pair(bsd_crop)
    with pytest.raises(ValueError, match="intensity must be 'restore'"):
        prepare_data(_cfg(val_count=0), pairs=[(noisy, clean)], intensity="unit")
    with pytest.raises(ValueError) as err:
        prepare_data(_cfg(val_count=0), pairs=[(noisy.astype(np.float32) / 3000, clean)], intensity="as-is")
    assert "pair[0]: intensity='as-is' takes float arrays on 0..1 (or uint8), got uint16" in str(err.value)
    with pytest.raises(ValueError) as err:
        prepare_data(_cfg(val_count=0), clean=[clean, np.full((64, 64), 900, np.uint16)])
    assert "image[1]: its 0.1st and 99.9th percentiles are both 900" in str(err.value)
    assert "image[0]" not in str(err.value)
