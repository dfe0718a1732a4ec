"""The geometric self-ensemble (``ensemble=n``): the dihedral transforms, the
mean it computes, exact tiling on odd-sized images with the unshuffle grid,
the dask and zarr paths, bad values, the CLI, and the bundled fast denoiser
on a real photograph (better with the ensemble than without).

Networks are tiny (M2R2 C8) with random BatchNorm statistics; images are
crops of the bundled public-domain astronaut photograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nets import random_memnet
from napari_memnet import restore, save_model
from napari_memnet.api import restore_iter
from napari_memnet.core.metrics import psnr
from napari_memnet.restoration.eager import restore_plane
from napari_memnet.restoration.engine import Engine
from napari_memnet.restoration.ensemble import transform, undo
from napari_memnet.sample_data import astronaut_uint8


def fast(s=2, seed=0):
    return random_memnet(2, 2, 8, seed=seed, unshuffle=s)


@pytest.fixture
def odd_crop():
    """An odd-sized crop: neither side is a multiple of the unshuffle factor."""
    return astronaut_uint8()[:101, :77].astype(np.float32) / 255.0


def np_transform(plane, k):
    out = np.rot90(plane, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def np_undo(plane, k):
    out = plane[:, ::-1] if k >= 4 else plane
    return np.ascontiguousarray(np.rot90(out, -(k % 4)))


def test_the_eight_transforms_are_distinct_and_undone():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for k in range(8):
        y = transform(x, k)
        seen.add(tuple(y.flatten().tolist()) + tuple(y.shape))
        np.testing.assert_array_equal(undo(y, k).numpy(), x.numpy())
        np.testing.assert_array_equal(y[0, 0].numpy(), np_transform(x[0, 0].numpy(), k))
    assert len(seen) == 8


@pytest.mark.parametrize("members", [2, 4, 8])
def test_the_ensemble_is_the_mean_over_transformed_inputs(members):
    net = fast(2, seed=3)
    plane = astronaut_uint8()[20:84, 30:94].astype(np.float32) / 255.0  # 64 x 64: on the unshuffle grid
    expected = np.mean([np_undo(restore_plane(net, np_transform(plane, k), device="cpu", precision="fp32"), k)
                        for k in range(members)], axis=0)
    got = restore_plane(net, plane, device="cpu", precision="fp32", ensemble=members)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    plain = restore_plane(net, plane, device="cpu", precision="fp32")
    assert np.abs(got - plain).max() > 1e-3  # the transforms change the output


@pytest.mark.parametrize("s", [2, 3])
def test_tiled_equals_untiled_on_an_odd_sized_image(s, odd_crop):
    """Every window is padded to the unshuffle grid before it is rotated, as the whole image is."""
    net = fast(s, seed=1)
    untiled = restore_plane(net, odd_crop, device="cpu", precision="fp32", tile_size=4096, ensemble=8)
    for tile in (16, 24, 37):
        tiled = restore_plane(net, odd_crop, device="cpu", precision="fp32", tile_size=tile, ensemble=8)
        assert np.abs(tiled - untiled).max() < 1e-4, tile


def test_restore_reports_it_and_the_dask_path_equals_eager(odd_crop):
    da = pytest.importorskip("dask.array")
    from napari_memnet.restoration.lazy import graph as lazy

    save_model(fast(2, seed=2), "fast-ens", task="denoise")
    img = (odd_crop * 255).round().astype(np.uint8)
    stack = np.stack([img, img[::-1]])
    events = list(restore_iter(stack, "denoise", model="fast-ens", device="cpu", precision="fp32", ensemble=4))
    result = events[-1]
    assert result.ensemble == 4 and result.data.shape == stack.shape
    plain = restore(stack, "denoise", model="fast-ens", device="cpu", precision="fp32")
    assert not np.array_equal(result.data, plain)
    lazy_result = lazy.restore_dask(da.from_array(stack), "denoise", model="fast-ens", chunks=30, device="cpu",
                                    precision="fp32", ensemble=4)
    out = lazy_result.compute()
    assert np.abs(out.astype(int) - result.data.astype(int)).max() <= 1  # uint8: equal up to rounding
    done = list(lazy.compute_iter(lazy_result))[-1]
    assert done.ensemble == 4


def test_zarr_output_records_it(tmp_path, odd_crop):
    zarr = pytest.importorskip("zarr")
    from napari_memnet.restoration.lazy import zarr_io

    save_model(fast(2, seed=4), "fast-zarr", task="denoise")
    src = (odd_crop * 255).round().astype(np.uint8)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=src.shape, chunks=(40, 40), dtype=src.dtype,
                          zarr_format=2)
    z[:] = src
    zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model="fast-zarr",
                            chunks=40, ensemble=2)
    out, _ = zarr_io.open_image(tmp_path / "out.zarr")
    expected = restore(src, "denoise", model="fast-zarr", ensemble=2)
    assert np.abs(out.compute().astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="different run"):  # resuming without the ensemble is another run
        zarr_io.restore_to_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "denoise", model="fast-zarr",
                                chunks=40)


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, True, "8", None])
def test_bad_values_are_refused_clearly(bad, odd_crop):
    net = fast(2)
    with pytest.raises(ValueError, match=r"ensemble must be an integer 1\.\.8"):
        restore(odd_crop, "denoise", model=net, ensemble=bad)
    with pytest.raises(ValueError, match=r"ensemble must be an integer 1\.\.8"):
        Engine(net, device="cpu", ensemble=bad)


def test_an_engine_fixes_its_ensemble(odd_crop):
    engine = Engine(fast(2), device="cpu", precision="fp32", ensemble=2)
    with pytest.raises(ValueError, match="already fixed"):
        restore_plane(engine, odd_crop, ensemble=4)
    np.testing.assert_array_equal(restore_plane(engine, odd_crop),
                                  restore_plane(fast(2), odd_crop, device="cpu", precision="fp32", ensemble=2))


def test_cli_restore_and_eval(tmp_path, capsys, shared_data):
    from PIL import Image

    from napari_memnet.cli import main

    save_model(fast(2, seed=5), "fast-cli", task="denoise")
    img = astronaut_uint8()[:45, :38]
    Image.fromarray(img).save(tmp_path / "a.png")
    code = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--task", "denoise",
                 "--model", "fast-cli", "--device", "cpu", "--ensemble", "8", "-q"])
    assert code == 0 and "x8 ensemble" in capsys.readouterr().out
    import tifffile

    got = tifffile.imread(tmp_path / "out" / "a_denoise.tif")
    np.testing.assert_array_equal(got, restore(img, "denoise", model="fast-cli", device="cpu", ensemble=8))
    capsys.readouterr()
    code = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--task", "denoise",
                 "--model", "fast-cli", "--ensemble", "9"])
    assert code == 2 and "ensemble must be an integer 1..8" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    code = main(["eval", "--task", "denoise", "--data", str(shared_data / "test"), "--datasets", "Set12",
                 "--levels", "25", "--max-images", "1", "--model", "fast-cli", "--device", "cpu", "--ensemble", "2"])
    assert code == 0 and "fast-cli (x2 self-ensemble)" in capsys.readouterr().out


def test_the_bundled_fast_denoiser_is_better_with_it():
    """Real weights on a real photograph: the x8 ensemble of the bundled fast denoiser beats the
    model alone (on Set12 at sigma 25: +0.09 dB, benchmarks/self_ensemble.py)."""
    from napari_memnet.models.files import ModelFileError, load_model

    try:
        model = load_model("memnet-fast-denoise")
    except ModelFileError:
        pytest.skip("the bundled fast denoiser is not installed")
    clean = astronaut_uint8()[40:168, 60:188].astype(np.float32) / 255.0
    noisy = (clean + np.random.default_rng(25).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    engine1 = Engine(model, device="cpu", precision="fp32")
    engine8 = Engine(model, device="cpu", precision="fp32", ensemble=8)
    alone = psnr(restore_plane(engine1, noisy), clean)
    ensembled = psnr(restore_plane(engine8, noisy), clean)
    assert ensembled > alone + 0.02, (alone, ensembled)
