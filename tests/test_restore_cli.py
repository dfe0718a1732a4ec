"""``memnet restore`` on real files: a Set5 PNG crop, an ImageJ TIFF stack, a
broken file among good ones, and refusing to overwrite an input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from _nets import random_memnet
from napari_memnet.cli import main
from napari_memnet.api import restore
from napari_memnet.models.files import load_model, save_model


@pytest.fixture
def tiny_models():
    """Tiny M2R2 C8 user models (saved into the per-test NAPARI_MEMNET_MODELS_DIR)."""
    save_model(random_memnet(2, 2, 8, seed=11, residual_std=4e-4), "tiny-denoise", task="denoise")
    save_model(random_memnet(2, 2, 8, seed=12, residual_std=4e-4), "tiny-sr", task="sr")
    return {"denoise": load_model("tiny-denoise"), "sr": load_model("tiny-sr")}


@pytest.fixture
def set5_crop(shared_data, tmp_path):
    src = shared_data / "test" / "Set5" / "butterfly.png"
    if not src.exists():
        src = sorted((shared_data / "test" / "Set5").glob("*.png"))[0]
    with Image.open(src) as im:
        crop = np.asarray(im.convert("RGB"))[40:64, 50:70].copy()
    path = tmp_path / "in" / "set5_crop.png"
    path.parent.mkdir()
    Image.fromarray(crop).save(path)
    return path, crop


def test_restores_a_real_png(tiny_models, set5_crop, tmp_path, capsys):
    path, crop = set5_crop
    out_dir = tmp_path / "out"
    code = main(["restore", str(path), "-o", str(out_dir), "--task", "denoise", "--model", "tiny-denoise",
                 "--device", "cpu", "--tile", "8"])
    assert code == 0
    result = tifffile.imread(out_dir / "set5_crop_denoise.tif")
    assert result.shape == crop.shape and result.dtype == np.uint8
    expected = restore(crop, "denoise", model=tiny_models["denoise"], device="cpu")
    np.testing.assert_array_equal(result, expected)
    assert not np.array_equal(result, crop)
    assert "restored 1 of 1" in capsys.readouterr().out
    assert [p.name for p in out_dir.iterdir()] == ["set5_crop_denoise.tif"]  # no temporary files left


def test_sr_on_an_imagej_stack_keeps_metadata(tiny_models, tmp_path):
    stack = (np.random.default_rng(0).random((3, 10, 12)) * 4000).astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack, imagej=True, resolution=(2.0, 4.0),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "--task", "sr", "--scale", "2",
                 "--model", "tiny-sr", "--device", "cpu", "-q"])
    assert code == 0
    with tifffile.TiffFile(tmp_path / "out" / "stack_sr.tif") as tif:
        data = tif.series[0].asarray()
        assert tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
        assert tif.imagej_metadata["unit"] == "um"
        xr = tif.pages[0].tags["XResolution"].value
        yr = tif.pages[0].tags["YResolution"].value
    assert data.shape == (3, 20, 24) and data.dtype == np.uint16
    assert xr[0] / xr[1] == pytest.approx(4.0) and yr[0] / yr[1] == pytest.approx(8.0)
    np.testing.assert_array_equal(data, restore(stack, "sr", scale=2, model=tiny_models["sr"], device="cpu"))


def test_a_failing_file_does_not_stop_the_others(tiny_models, set5_crop, tmp_path, capsys):
    path, _ = set5_crop
    broken = path.parent / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    out_dir = tmp_path / "out"
    code = main(["restore", str(path.parent), str(tmp_path / "missing.tif"), "-o", str(out_dir),
                 "--task", "denoise", "--model", "tiny-denoise", "--device", "cpu", "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.png" in err and "missing.tif" in err
    assert (out_dir / "set5_crop_denoise.tif").exists()
    assert not (out_dir / "broken_denoise.tif").exists()


def test_never_overwrites_an_input(tiny_models, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((6, 6), 50, np.uint8)).save(folder / "a.png")
    tifffile.imwrite(folder / "a_denoise.tif", np.full((6, 6), 9, np.uint8))
    code = main(["restore", str(folder / "a.png"), str(folder / "a_denoise.tif"), "-o", str(folder),
                 "--task", "denoise", "--model", "tiny-denoise", "--device", "cpu", "-q"])
    assert code == 1
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert (tifffile.imread(folder / "a_denoise.tif") == 9).all()  # the input is intact
    assert (folder / "a_denoise_denoise.tif").exists()


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    code = main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--task", "denoise",
                 "--model", "no-such-model"])
    assert code == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err


def test_sr_needs_a_scale(tmp_path, capsys):
    code = main(["restore", str(tmp_path), "-o", str(tmp_path / "o"), "--task", "sr"])
    assert code == 2 and "needs a scale" in capsys.readouterr().err


def test_camera_counts_stack(tiny_models, shared_data, tmp_path, capsys):
    """--camera: a uint16 ZYX stack of camera counts, each plane stabilised for its own noise, as
    ``restore(..., camera=True)``; refused for other tasks and for zarr output."""
    from napari_memnet.core.camera import poisson_gaussian

    with Image.open(sorted((shared_data / "test" / "Set5").glob("*.png"))[0]) as im:
        gray = np.asarray(im.convert("L"), dtype=np.float64)[:64, :72] / 255.0
    counts = np.stack([poisson_gaussian(gray, peak, 2.0, 100.0, rng=k) for k, peak in enumerate((10.0, 50.0))])
    src = tmp_path / "counts.tif"
    tifffile.imwrite(src, counts, imagej=True, metadata={"axes": "ZYX"})
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "--task", "denoise", "--model", "tiny-denoise",
                 "--device", "cpu", "-q", "--camera"])
    assert code == 0
    expected = restore(counts, "denoise", model=tiny_models["denoise"], device="cpu", camera=True)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "counts_denoise.tif"), expected)
    capsys.readouterr()
    for extra in (["--task", "sr", "--scale", "2"], ["--task", "denoise", "--zarr"]):
        assert main(["restore", str(src), "-o", str(tmp_path / "o2"), "--camera", *extra]) == 2
        assert "--camera is for --task denoise" in capsys.readouterr().err
