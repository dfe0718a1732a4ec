"""The held-out measurement tools of the fast denoiser's runs (benchmarks/average_models.py,
benchmarks/recalibration_patch.py, their shared benchmarks/heldout.py), with tiny MemNets on real
Train400 images: the average is the weighted mean of the weights, BatchNorm statistics are
recalibrated and nothing else changes, and each prints a row per model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _benchmarks import benchmark_modules
from _nets import random_memnet

from napari_memnet.models.files import load_model, save_model

_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def tools():
    with benchmark_modules("average_models", "recalibration_patch") as modules:
        yield modules


def _tiny(seed: int, recursions: int = 2):
    """A small fast MemNet (space-to-depth 2) with random weights and BatchNorm statistics, and a small
    residual (its output near its input, so the validation PSNR is near the noisy input's)."""
    return random_memnet(blocks=1, recursions=recursions, channels=4, unshuffle=2, seed=seed,
                         residual_std=0.001)


@pytest.fixture
def data_dirs(shared_data, tmp_path):
    """Four Train400 images to draw patches from, two others held out whole."""
    source = sorted((shared_data / "train" / "Train400").glob("*.png"))
    if len(source) < 6:
        pytest.skip("Train400 not found in the shared data")
    clean, val = tmp_path / "clean", tmp_path / "val"
    clean.mkdir()
    val.mkdir()
    for path in source[:4]:
        shutil.copy(path, clean / path.name)
    for path in source[-2:]:
        shutil.copy(path, val / path.name)
    return clean, val


def _common(clean: Path, val: Path) -> list[str]:
    return ["--clean-dir", str(clean), "--val-dir", str(val), "--val-levels", "25", "--batches", "2",
            "--batch", "2", "--threads", "1"]


def test_average_state_is_the_weighted_mean_and_keeps_the_first_models_bn_statistics(tools):
    a, b = _tiny(0).state_dict(), _tiny(1).state_dict()
    avg = tools["average_models"].average_state([a, b], [1.0, 3.0])
    assert set(avg) == set(a)
    checked = 0
    for key, tensor in avg.items():
        if key.endswith(_BN_STATS):
            assert torch.equal(tensor, a[key]), key
        else:
            assert torch.allclose(tensor, 0.25 * a[key] + 0.75 * b[key], atol=1e-7), key
            checked += 1
    assert checked > 10
    other = _tiny(0, recursions=3).state_dict()
    with pytest.raises(SystemExit, match="same tensors"):
        tools["average_models"].average_state([a, other], [1.0, 1.0])


def test_average_models_validates_inputs_and_saves_the_recalibrated_average(tools, data_dirs, tmp_path, capsys):
    clean, val = data_dirs
    paths = [save_model(_tiny(seed), f"tiny{seed}", task="denoise", directory=tmp_path / "in").path
             for seed in (0, 1)]
    out = tmp_path / "avg"
    tools["average_models"].main([str(p) for p in paths] + _common(clean, val)
                                 + ["--patch", "32", "--name", "avg", "--save", str(out)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| tiny0 (as saved)", "| tiny1 (as saved)",
                                                     "| average (1, 1), BatchNorm at 32 px"]
    saved = load_model(out / "avg.safetensors").network.state_dict()
    a, b = (load_model(p).network.state_dict() for p in paths)
    for key, tensor in saved.items():
        if key.endswith(("running_mean", "running_var")):
            assert not torch.equal(tensor, a[key]), f"{key}: BatchNorm statistics were not recalibrated"
        elif not key.endswith("num_batches_tracked"):
            assert torch.allclose(tensor, 0.5 * (a[key] + b[key]), atol=1e-6), key


def test_recalibration_patch_changes_only_the_bn_statistics(tools, data_dirs, tmp_path, capsys):
    clean, val = data_dirs
    path = save_model(_tiny(2), "tiny2", task="denoise", directory=tmp_path / "in").path
    out = tmp_path / "bn"
    tools["recalibration_patch"].main([str(path), "--patches", "0,32", "--save", str(out)] + _common(clean, val))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| as saved", "| 32"]
    psnrs = [float(r.split(" | ")[1]) for r in rows[1:]]
    assert all(10.0 < p < 60.0 for p in psnrs), psnrs
    original = load_model(path).network.state_dict()
    recalibrated = load_model(out / "tiny2-bn32.safetensors").network.state_dict()
    assert not (out / "tiny2-bn0.safetensors").exists()  # "as saved" is only validated
    for key, tensor in recalibrated.items():
        if key.endswith(("running_mean", "running_var")):
            assert not torch.equal(tensor, original[key]), key
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(tensor, original[key]), f"{key}: a weight changed"
