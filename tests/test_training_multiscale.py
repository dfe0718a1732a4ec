"""Multi-scale training images (``TrainConfig.scales``): downscaled copies of the clean training images only."""

from __future__ import annotations

import numpy as np
import pytest

from napari_memnet.commands.train import build_config, register
from napari_memnet.core.imresize import imresize
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.data import prepare_data
from napari_memnet.training.noisy_data import prepare_noisy_data
from napari_memnet.training.sampler import PatchSampler


@pytest.fixture(scope="module")
def train400(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))[:4]
    assert len(files) == 4
    return files


def _cfg(**kw):
    base = dict(task="denoise", levels=(10, 30), val_count=1, val_crop=48, patch_size=64)
    base.update(kw)
    return TrainConfig(**base)


def test_training_images_gain_downscaled_copies_and_validation_none(train400):
    plain = prepare_data(_cfg(), clean=train400)
    multi = prepare_data(_cfg(scales=(1, 0.9, 0.8, 0.7)), clean=train400)
    originals = {it.name: it.target for it in plain.train}
    assert len(originals) == 3  # one of the four held out
    names = [it.name for it in multi.train]
    assert names[:3] == list(originals)
    assert sorted(names[3:]) == sorted(f"{n}@{s:g}" for n in originals for s in (0.9, 0.8, 0.7))
    # the held-out image is the same, and no copy of it (at any scale) is a training image
    held_out = {v.name for v in multi.val}
    assert held_out == {v.name for v in plain.val}
    assert not any(n.split("@")[0] in held_out for n in names)
    for a, b in zip(plain.val, multi.val):
        np.testing.assert_array_equal(a.input, b.input)
    by_name = {it.name: it.target for it in multi.train}
    for name, clean in originals.items():
        np.testing.assert_array_equal(by_name[name], clean)  # originals untouched
        small = by_name[f"{name}@0.7"]
        assert small.dtype == np.float32 and small.shape == tuple(int(np.ceil(0.7 * n)) for n in clean.shape)
        # MATLAB's antialiased bicubic (core.imresize), clipped to the original's range
        expect = np.clip(imresize(clean.astype(np.float64), 0.7), clean.min(), clean.max())
        np.testing.assert_allclose(small, expect, atol=1e-6)
        assert small.min() >= clean.min() and small.max() <= clean.max()
    assert multi.summary()["train_images"] == 12
    # the sampler draws the copies in proportion to their patch positions (Train400 is 180 x 180)
    sampler = PatchSampler(multi.train, "denoise", (10, 30), 64, seed=0, device="cpu")
    weight = dict(zip(names, sampler.weights))
    first = names[0]
    ratio = weight[f"{first}@0.7"] / weight[first]
    assert ratio == pytest.approx((126 - 63) ** 2 / (180 - 63) ** 2)


def test_copies_smaller_than_the_training_crop_are_left_out(train400):
    data = prepare_data(_cfg(scales=(0.5, 0.3), patch_size=64), clean=train400)
    names = [it.name for it in data.train]
    assert len([n for n in names if n.endswith("@0.5")]) == 3  # 90 x 90 holds a 64 px patch
    assert not [n for n in names if n.endswith("@0.3")]  # 54 x 54 does not


def test_deblock_copies_stay_on_the_8bit_grid(train400):
    data = prepare_data(_cfg(task="deblock", levels=(10, 40), scales=(0.8,), patch_size=32), clean=train400)
    copies = [it.target for it in data.train if "@" in it.name]
    assert copies
    for plane in copies:
        np.testing.assert_allclose(plane * 255, np.round(plane * 255), atol=1e-4)


def test_bad_scales_and_sources_are_refused_with_what_was_expected(train400, tmp_path):
    for bad in ((1.5,), (0,), ("x",)):
        with pytest.raises(ValueError, match=r"scales must be"):
            _cfg(scales=bad)
    with pytest.raises(ValueError, match="clean images only"):
        _cfg(scales=(1, 0.8), noisy_dir=str(tmp_path), val_count=1)
    with pytest.raises(ValueError, match="clean images only"):
        _cfg(scales=(0.8,), pairs_input_dir=str(tmp_path), pairs_target_dir=str(tmp_path))
    clean = [np.asarray(np.random.default_rng(0).random((80, 80)), np.float32) for _ in range(3)]
    with pytest.raises(ValueError, match="clean images only"):
        prepare_data(_cfg(scales=(0.8,)), pairs=[(c, c) for c in clean])
    with pytest.raises(ValueError, match="clean images only"):  # noisy arrays (no noisy_dir for the config to see)
        prepare_noisy_data(_cfg(scales=(0.8,)), clean)
    assert _cfg(scales=(1,)).scales == (1,)  # 1 alone: the images as they are, fine with any source
    assert TrainConfig.from_dict(_cfg(scales=(1, 0.9)).to_dict()).scales == (1, 0.9)


def test_cli_flag_reaches_the_config(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--task", "denoise", "--clean-dir", str(tmp_path), "--out-dir", str(tmp_path / "run"),
                              "--scales", "1,0.9,0.8,0.7"])
    assert build_config(args).scales == (1, 0.9, 0.8, 0.7)
