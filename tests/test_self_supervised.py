"""Self-supervised training from noisy images alone: the objectives, fine_tune(noisy=...), memnet train --noisy,
bad input, and the camera (Poisson-Gaussian) noise model. Real images (Set12 crops) made noisy by the camera
model; tiny networks (tests/_nets.py sizes), a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import napari_memnet
from napari_memnet.cli import main
from napari_memnet.core.camera import anscombe, estimate_noise, inverse_anscombe, poisson_gaussian
from napari_memnet.training import events as ev
from napari_memnet.training import self_supervised as ss

TINY = {"blocks": 1, "recursions": 2, "channels": 8}
ARCHS = {"memnet": TINY, "fast memnet": {**TINY, "unshuffle": 2},
         "red30": {"architecture": "red30", "layers": 2, "channels": 8}}


@pytest.fixture
def clean_crops(shared_data):
    """Four 64x72 crops of real Set12 photographs, 0..1 float64."""
    crops = []
    for name in ("01.png", "02.png", "05.png", "07.png"):
        with Image.open(shared_data / "test" / "Set12" / name) as im:
            crops.append(np.asarray(im.convert("L"), dtype=np.float64)[60:124, 40:112] / 255.0)
    return crops


@pytest.fixture
def noisy_counts(clean_crops):
    """The crops as a camera records them at about 20 photons: uint16 counts, offset 100, read noise 2."""
    rng = np.random.default_rng(0)
    return [poisson_gaussian(c, 20.0, 2.0, 100.0, rng=rng) for c in clean_crops]


def run_dirs(tmp_path, name):
    return {"out_dir": tmp_path / "runs" / name, "model_dir": tmp_path / "models"}


# ------------------------------------------------------------------------------------------ the objectives
def test_neighbour_subsampling_takes_a_4_neighbour_of_each_cell():
    y = torch.arange(2 * 8 * 10, dtype=torch.float32).reshape(2, 1, 8, 10)
    gen = torch.Generator().manual_seed(0)
    first, second = ss.neighbour_indices(y, gen)
    g1, g2 = ss.subsample(y, first), ss.subsample(y, second)
    assert g1.shape == g2.shape == (2, 1, 4, 5)
    # pixel value v of an 8x10 image sits at (v // 10, v % 10) within its batch item
    pos1, pos2 = (g1 % 80).long(), (g2 % 80).long()
    dy, dx = (pos1 // 10 - pos2 // 10).abs(), (pos1 % 10 - pos2 % 10).abs()
    assert torch.all(dy + dx == 1)  # a 4-neighbour, never the pixel itself
    cell_y, cell_x = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    assert torch.all(pos1 // 10 // 2 == cell_y) and torch.all(pos1 % 10 // 2 == cell_x)  # inside its own cell
    assert len(set(first.flatten().tolist())) == 4  # every position of the cell is drawn


def test_blindspot_masks_one_pixel_per_cell_and_fills_it_from_its_neighbours():
    y = torch.rand(3, 1, 17, 22, generator=torch.Generator().manual_seed(1))
    mask = ss.blindspot_mask(y, torch.Generator().manual_seed(2))
    assert mask.shape == y.shape and mask.dtype == torch.bool
    full = mask[..., :16, :20].reshape(3, 4, 4, 5, 4)  # whole 4x4 cells: exactly one masked pixel each
    assert torch.all(full.sum(dim=(2, 4)) == 1)
    inp = ss.blindspot_input(y, mask)
    assert torch.equal(inp[~mask], y[~mask])
    b, _, i, j = [int(v) for v in torch.nonzero(mask[:, :, 1:-1, 1:-1])[0]]
    i, j = i + 1, j + 1
    window = y[b, 0, i - 1:i + 2, j - 1:j + 2]
    assert float(inp[b, 0, i, j]) == pytest.approx(float((window.sum() - window[1, 1]) / 8), abs=1e-6)


# ------------------------------------------------------------------------------------------ fine_tune(noisy=)
@pytest.mark.parametrize("method", ["neighbor2neighbor", "blindspot"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_fine_tune_on_noisy_uint16_alone_for_every_architecture(noisy_counts, tmp_path, method, arch):
    seen = []
    name = f"ss-{method[:5]}-{arch.replace(' ', '-')}"
    model = napari_memnet.fine_tune(noisy=noisy_counts, task="denoise", architecture=dict(ARCHS[arch]), steps=3,
                                    batch_size=4, patch_size=24, lr=1e-3, name=name, validation=1,
                                    self_supervised=method, callback=seen.append, threads=1, validate_every=3,
                                    **run_dirs(tmp_path, name))
    assert isinstance(seen[-1], ev.Finished) and sum(isinstance(e, ev.Step) for e in seen) == 3
    vals = [e for e in seen if isinstance(e, ev.Validation)]
    assert [v.step for v in vals] == [0, 3]
    for v in vals:  # against the held-out noisy image: a loss and its dB, the identity as the input line
        assert v.self_supervised_loss > 0 and np.isfinite(v.psnr) and np.isfinite(v.baseline_psnr)
        assert list(v.per_level) == [ss.LEVEL]
        assert v.psnr == pytest.approx(10 * np.log10(1 / (2 * v.self_supervised_loss)), abs=0.5)
    card = model.card
    assert card["training"]["data"]["source"] == "noisy" and card["training"]["data"]["train_images"] == 3
    assert card["training"]["config"]["self_supervised"] == method
    assert card["metrics"][0]["level"] == ss.LEVEL
    # restore's intensity rule: uint16 in, uint16 out, in the counts' range
    restored = napari_memnet.restore(noisy_counts[0], "denoise", model=str(model.path))
    assert restored.dtype == np.uint16 and restored.shape == noisy_counts[0].shape
    assert 50 < float(restored.mean()) < 200


def test_noisy_runs_start_from_the_bundled_cpu_denoiser_with_its_batchnorm_kept(noisy_counts, tmp_path):
    from napari_memnet.models.files import default_model_name, load_model

    base_name = default_model_name("denoise", "cpu")
    model = napari_memnet.fine_tune(noisy=noisy_counts, task="denoise", steps=2, batch_size=2, patch_size=32,
                                    name="from-default", validation=1, threads=1, **run_dirs(tmp_path, "d"))
    assert model.card["base_model"] == base_name == ss.default_base_model()
    base = load_model(base_name).network
    tuned = model.network
    assert tuned.config == base.config
    # frozen BatchNorm: the base model's running statistics, not re-estimated on the noisy patches
    for name, buf in base.state_dict().items():
        if "running_" in name:
            torch.testing.assert_close(tuned.state_dict()[name], buf)
    assert any(not torch.equal(tuned.state_dict()[k], v) for k, v in base.state_dict().items() if k.endswith("weight"))
    assert "batchnorm_recalibration" not in model.card["training"]


def test_a_noisy_run_is_not_replaced_by_accident_then_resumes(noisy_counts, tmp_path):
    dirs = run_dirs(tmp_path, "again")
    kw = dict(noisy=noisy_counts, task="denoise", architecture=dict(TINY), batch_size=2, patch_size=24,
              name="again", validation=1, threads=1, checkpoint_every=1)
    napari_memnet.fine_tune(steps=2, **kw, **dirs)
    with pytest.raises(ValueError, match="resume=True"):
        napari_memnet.fine_tune(steps=4, **kw, **dirs)
    seen = []
    napari_memnet.fine_tune(steps=4, resume=True, callback=seen.append, **kw, **dirs)
    assert seen[0].resumed and [e.step for e in seen if isinstance(e, ev.Step)] == [3, 4]


def test_one_source_only(noisy_counts, clean_crops, tmp_path):
    with pytest.raises(ValueError, match="exactly one training source"):
        napari_memnet.fine_tune(clean=clean_crops, noisy=noisy_counts, task="denoise", name="two",
                                **run_dirs(tmp_path, "two"))
    with pytest.raises(ValueError, match="train a denoiser"):
        napari_memnet.fine_tune(noisy=noisy_counts, task="sr", architecture=dict(TINY), name="sr-noisy",
                                **run_dirs(tmp_path, "sr"))


@pytest.mark.parametrize("case", ["one tiny image", "constant images", "NaN", "a mix of dtypes"])
def test_bad_noisy_input_is_refused_with_a_clear_message_and_nothing_written(noisy_counts, tmp_path, case):
    if case == "one tiny image":
        noisy, expected = [noisy_counts[0][:16, :20]], "20x16 pixels is smaller than the 24x24"
    elif case == "constant images":
        noisy = [np.full((64, 64), 7, np.uint8), np.full((64, 64), 9, np.uint8)]
        expected = "noisy[0]: a constant image (every pixel 7): there is no noise to learn from"
    elif case == "NaN":
        bad = noisy_counts[1].astype(np.float32)
        bad[3, 4] = np.nan
        noisy, expected = [noisy_counts[0].astype(np.float32), bad], "noisy[1]: contains non-finite values"
    else:
        noisy = [noisy_counts[0], noisy_counts[1].astype(np.float32) / 300, noisy_counts[2]]
        expected = "2 pixel types (float32: noisy[1]; uint16: noisy[0], noisy[2])"
    dirs = run_dirs(tmp_path, "bad")
    with pytest.raises(ValueError, match="training data refused") as info:
        napari_memnet.fine_tune(noisy=noisy, task="denoise", architecture=dict(TINY), steps=2, batch_size=2,
                                patch_size=24, name="bad", validation=0, **dirs)
    assert expected in str(info.value)
    assert not dirs["out_dir"].exists() and not dirs["model_dir"].exists()


def test_a_constant_uint16_image_is_refused_by_its_percentiles(noisy_counts, tmp_path):
    dirs = run_dirs(tmp_path, "flat")
    flat = np.full((64, 64), 1000, np.uint16)  # neither 8-bit nor 0..1: mapped by percentiles
    with pytest.raises(ValueError, match=r"noisy\[1\].*percentiles are both 1000"):
        napari_memnet.fine_tune(noisy=[noisy_counts[0], flat], task="denoise", architecture=dict(TINY), steps=1,
                                name="flat", validation=0, **dirs)
    assert not dirs["out_dir"].exists() and not dirs["model_dir"].exists()


# ------------------------------------------------------------------------------------------ memnet train --noisy
def test_cli_train_noisy_folder(noisy_counts, tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i, z in enumerate(noisy_counts):
        tifffile.imwrite(folder / f"cell{i}.tif", z)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "cli-ss"
    argv = ["train", "--task", "denoise", "--noisy", str(folder), "--self-supervised", "blindspot",
            "--blocks", "1", "--recursions", "2", "--channels", "8", "--unshuffle", "2", "--steps", "2",
            "--batch", "2", "--patch", "24", "--out-dir", str(out), "--name", "cli-noisy", "--val-count", "1",
            "--threads", "1", "--validate-every", "2", "--json"]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    vals = [e for e in printed if e["event"] == "validation"]
    assert [v["step"] for v in vals] == [0, 2] and all(v["self_supervised_loss"] > 0 for v in vals)
    card = json.loads((out / "cli-noisy.json").read_text())
    assert card["training"]["data"]["source"] == "noisy" and card["config"]["unshuffle"] == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # inputs untouched
    # bad data: one line per problem, exit status 2, nothing written
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.full((64, 64), 5, np.uint8)).save(flat / "flat.png")
    assert main(["train", "--task", "denoise", "--noisy", str(flat), "--out-dir", str(tmp_path / "o"),
                 "--val-count", "0"]) == 2
    assert "flat.png: a constant image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ camera noise
def test_poisson_gaussian_counts_and_the_noise_estimate(shared_data):
    with Image.open(shared_data / "test" / "Set12" / "02.png") as im:
        clean = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    kept = clean.copy()
    z = poisson_gaussian(clean, 25.0, 2.0, 100.0, rng=1)
    assert z.dtype == np.uint16 and np.array_equal(clean, kept)
    flat = poisson_gaussian(np.full((200, 200), 0.6), 25.0, 2.0, 100.0, rng=2).astype(np.float64)
    assert flat.mean() == pytest.approx(100 + 15, abs=0.2)
    assert flat.var() == pytest.approx(15 + 4 + 1 / 12, rel=0.05)  # Poisson + read noise + rounding
    a, b = estimate_noise(z)
    assert a == pytest.approx(1.0, abs=0.15)  # one count per photon
    assert b == pytest.approx(4 + 1 / 12 - 100 * 1.0, abs=12)  # var = a (z - offset) + read^2
    t = anscombe(z, a, b)
    inside = a * z + 0.375 * a * a + b > 0  # (below: clamped to 0 under the root)
    assert inside.mean() > 0.99
    np.testing.assert_allclose(inverse_anscombe(t, a, b)[inside], z[inside], atol=1e-6)
    flat_t = anscombe(flat, 1.0, 4 + 1 / 12 - 100)
    assert flat_t.std() == pytest.approx(1.0, abs=0.05)  # stabilised: unit variance


def test_restore_with_camera_noise_stabilises_the_variance_first(shared_data):
    from napari_memnet.core.metrics import psnr

    with Image.open(shared_data / "test" / "Set12" / "02.png") as im:
        clean = np.asarray(im.convert("L"), dtype=np.float64)[64:192, 64:192] / 255.0
    counts = poisson_gaussian(clean, 15.0, 2.0, 100.0, rng=3)
    kept = counts.copy()

    def photons(out):
        return float(psnr(((out.astype(np.float64) - 100.0) / 15.0).astype(np.float32), clean.astype(np.float32)))

    plain = napari_memnet.restore(counts, "denoise")
    stabilised = napari_memnet.restore(counts, "denoise", camera=True)
    assert stabilised.dtype == np.uint16 and stabilised.shape == counts.shape
    assert photons(stabilised) > photons(plain) + 1.0  # the measured gain is about 2 dB on Set12
    np.testing.assert_array_equal(counts, kept)
    with pytest.raises(ValueError, match="camera=True is for task 'denoise'"):
        napari_memnet.restore(counts, "sr", scale=2, camera=True)
    with pytest.raises(ValueError, match="on gray images"):
        napari_memnet.restore(np.stack([counts] * 3, axis=-1), "denoise", camera=True)  # RGB
    with pytest.raises(ValueError, match="in-memory"):
        napari_memnet.restore(counts, "denoise", camera=True, scheduler="synchronous")
    # a stack: every plane with its own noise estimate, as if restored alone
    brighter = poisson_gaussian(clean, 40.0, 3.0, 100.0, rng=4)
    stack = napari_memnet.restore(np.stack([counts, brighter]), "denoise", camera=True)
    np.testing.assert_array_equal(stack[0], stabilised)
    np.testing.assert_array_equal(stack[1], napari_memnet.restore(brighter, "denoise", camera=True))


def test_noisy_folder_refuses_a_separate_validation_or_clean_folder(tmp_path):
    from napari_memnet.training.config import TrainConfig

    for extra in ({"val_dir": str(tmp_path)}, {"clean_dir": str(tmp_path)}):
        with pytest.raises(ValueError, match="cannot be combined with val_dir or clean_dir"):
            TrainConfig(task="denoise", noisy_dir=str(tmp_path), **extra)
