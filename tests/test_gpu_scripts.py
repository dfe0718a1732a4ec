"""The GPU scripts (benchmarks/gpu) in their --smoke mode on the CPU: the device check's JSON, the
sprint's JSON and weights. On a GPU machine the same scripts run without --smoke (docs/performance.md)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / "benchmarks" / "gpu"
CUDA_ONLY = ("tile_from_free_memory", "oom_fallback", "effect[cudnn.benchmark]", "paper_bf16_goal")


def _strict_json(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"{path.name} holds {name}, which is not JSON")

    return json.loads(path.read_text("utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def gpu_modules(tmp_path_factory):
    """The scripts' modules, imported with their folder on sys.path and a private model folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAPARI_MEMNET_MODELS_DIR", str(tmp_path_factory.mktemp("gpu_models")))
        mp.syspath_prepend(str(GPU_DIR))
        before = set(sys.modules)
        yield {name: importlib.import_module(name) for name in ("_common", "device_check")}
        for name in set(sys.modules) - before:
            if getattr(sys.modules[name], "__file__", "") and str(GPU_DIR) in sys.modules[name].__file__:
                del sys.modules[name]


@pytest.fixture(scope="module")
def device_check_json(gpu_modules, tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    assert gpu_modules["device_check"].main(["--smoke", "--out", str(out)]) == 0
    return _strict_json(out / "device_check.json")


def test_device_check_smoke_writes_every_check(device_check_json):
    data = device_check_json
    assert data["finished"] is True and data["mode"] == "smoke"
    env = data["environment"]
    assert env["torch"] and env["date_utc"] and env["device"] == "cpu"
    names = [c["name"] for c in data["checks"]]
    assert len(names) == len(set(names))
    for check in data["checks"]:
        assert set(check) >= {"name", "ok", "value", "seconds"}
        assert check["ok"] in (True, False, None)
    expected = {"restore_vs_cpu[denoise]", "restore_vs_cpu[sr]", "restore_vs_cpu[deblock]", "restore_uint8_api",
                "nd_stack_tzyx_uint16", "rgba_uint8", "dask_path", "train_steps", "fine_tune",
                "profile[paper,bf16]", "effect[channels_last]", *CUDA_ONLY}
    assert expected <= set(names)
    for model in ("paper", "fast"):
        assert any(n.startswith(f"throughput[{model},bf16,") for n in names)
        assert any(n.startswith(f"throughput[{model},fp32,") for n in names)


def test_device_check_smoke_passes_on_the_cpu_and_skips_cuda_checks(device_check_json):
    checks = {c["name"]: c for c in device_check_json["checks"]}
    assert device_check_json["summary"]["failed"] == [], [checks[n].get("error") for n in device_check_json["summary"]["failed"]]
    for name in CUDA_ONLY:
        assert checks[name]["ok"] is None and checks[name]["value"].startswith("skipped: no CUDA")
    has_dask = importlib.util.find_spec("dask") is not None
    assert checks["dask_path"]["ok"] is (True if has_dask else None)
    for name, check in checks.items():
        if name.startswith("throughput["):
            assert check["ok"] is True
            assert check["value"]["mp_per_s"] > 0 and math.isfinite(check["value"]["forward_tflop_per_s"])
    restore = checks["restore_vs_cpu[denoise]"]["value"]
    assert {"fp32", "fp32_no_tf32", "bf16"} <= set(restore)
    assert restore["bf16"]["max_abs_diff"] >= restore["fp32"]["max_abs_diff"]  # CPU vs CPU: fp32 is the reference
    profile = checks["profile[paper,bf16]"]["value"]
    assert 0 < len(profile["top"]) <= 15 and profile["table"]
    train = checks["train_steps"]["value"]
    assert train["steps"] > 0 and math.isfinite(train["last_loss"])


def test_a_failing_check_is_recorded_and_the_others_still_run(gpu_modules, tmp_path):
    common = gpu_modules["_common"]
    report = common.Report(tmp_path / "r.json", {"device": "cpu"}, budget_s=None)

    def broken():
        raise RuntimeError("no such kernel")

    report.run("broken", broken)
    report.run("fine", lambda: (True, {"x": float("nan")}))
    report.finish()
    data = _strict_json(tmp_path / "r.json")
    broken_entry, fine_entry = data["checks"]
    assert broken_entry["ok"] is False and "no such kernel" in broken_entry["error"]
    assert fine_entry["ok"] is True and fine_entry["value"] == {"x": None}  # NaN written as null
    assert data["summary"]["failed"] == ["broken"]


def test_spent_time_budget_skips_heavy_checks_only(gpu_modules, tmp_path):
    common = gpu_modules["_common"]
    report = common.Report(tmp_path / "r.json", {}, budget_s=0.0)
    heavy = report.run("heavy", lambda: (True, 1), heavy=True)
    light = report.run("light", lambda: (True, 1))
    assert heavy["ok"] is None and "time budget" in heavy["value"]
    assert light["ok"] is True


def _run_sprint(tmp_path, *args) -> tuple[dict, Path]:
    out = tmp_path / "sprint"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), NAPARI_MEMNET_MODELS_DIR=str(tmp_path / "models"))
    proc = subprocess.run([sys.executable, str(GPU_DIR / "sprint.py"), "--smoke", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return _strict_json(out / "sprint.json"), out


def _check_sprint(data: dict, out: Path, task: str):
    import napari_memnet
    from napari_memnet.training.config import TrainConfig

    assert data["status"] == "done" and data["task"] == task
    assert data["steps"] >= data["config"]["max_steps"] and data["patches_per_s"] > 0
    for key in ("val_psnr_before", "val_psnr_after", "val_input_psnr"):
        assert math.isfinite(data[key])
    assert data["val_psnr_after"] >= data["val_psnr_before"]  # the saved weights are the best validated
    levels = TrainConfig(task=task, levels=data["config"]["levels"]).resolved_val_levels()
    assert {float(k) for k in data["per_level"]} == {float(v) for v in levels}
    assert all(math.isfinite(v["after"]) for v in data["per_level"].values())
    weights = out / data["weights"]["path"]
    assert weights.stat().st_size == data["weights"]["bytes"] < 16 * 2**20
    model = napari_memnet.load_model(weights)
    assert model.task == task and model.card["training"]["validation_psnr_after"] == pytest.approx(data["val_psnr_after"])
    assert model.architecture == data["architecture"]
    return model


def test_sprint_smoke_deblock_with_worker_processes_and_profile(tmp_path):
    data, out = _run_sprint(tmp_path, "--task", "deblock", "--minutes", "1", "--profile-steps", "4")
    _check_sprint(data, out, "deblock")
    assert data["config"]["loader"] == "workers" and data["config"]["workers"] > 0
    profile = data["profile"]
    assert set(profile["phase_ms"]) == {"data", "forward", "backward", "optimizer"}
    assert profile["step_ms"] > 0 and profile["profiler"]["top"]
    assert sorted(os.listdir(out)) == sorted(["sprint.json", data["weights"]["path"],
                                              Path(data["weights"]["path"]).with_suffix(".json").name])


def test_sprint_smoke_red30_denoise_inline_restores(gpu_modules, tmp_path):
    """In this process (no worker processes to fork with the inline loader): main() returns 0."""
    import numpy as np
    import torch

    import napari_memnet

    sprint = importlib.import_module("sprint")
    out = tmp_path / "sprint"
    with torch.random.fork_rng():
        code = sprint.main(["--smoke", "--task", "denoise", "--model", "red30", "--loader", "inline",
                            "--minutes", "1", "--max-seconds", "600", "--out", str(out)])
    assert code == 0
    data = _strict_json(out / "sprint.json")
    model = _check_sprint(data, out, "denoise")
    assert data["architecture"] == "red30" and data["config"]["loader"] == "inline"
    image = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    restored = napari_memnet.restore(image, "denoise", model=model, device="cpu")
    assert restored.shape == image.shape and restored.dtype == image.dtype


def test_sprint_smoke_grows_the_start_model(gpu_modules, tmp_path):
    """--grow M,R: the start MemNet is grown first (models/grow.py) and saved grown."""
    import torch

    sprint = importlib.import_module("sprint")
    out = tmp_path / "sprint"
    with torch.random.fork_rng():
        code = sprint.main(["--smoke", "--task", "denoise", "--model", "fast", "--grow", "3,3", "--loader", "inline",
                            "--minutes", "1", "--max-seconds", "600", "--out", str(out)])
    assert code == 0
    data = _strict_json(out / "sprint.json")
    model = _check_sprint(data, out, "denoise")
    assert data["grown"]["blocks"] == 3 and data["grown"]["recursions"] == 3
    assert (model.network.config.blocks, model.network.config.recursions) == (3, 3)
    assert data["name"].endswith("-m3r3-sprint")


def test_sprint_freeze_batchnorm_keeps_the_start_statistics(gpu_modules, tmp_path):
    """--freeze-batchnorm: the saved net normalises with the start model's statistics (a fresh net's 0 and 1:
    batch statistics would have moved them at the first step), validations in between included."""
    import torch

    from napari_memnet.training.bn_calibration import batchnorm_layers

    sprint = importlib.import_module("sprint")
    out = tmp_path / "sprint"
    with torch.random.fork_rng():
        code = sprint.main(["--smoke", "--task", "denoise", "--model", "fast", "--loader", "inline", "--freeze-batchnorm",
                            "--recalibrate-batches", "0", "--checkpoint-minutes", "0", "--minutes", "1",
                            "--max-seconds", "600", "--out", str(out)])
    assert code == 0
    data = _strict_json(out / "sprint.json")
    model = _check_sprint(data, out, "denoise")
    assert data["config"]["freeze_batchnorm"] is True and data["best"] != "start"
    assert sum(1 for h in data["history"] if "val_psnr" in h) >= 2  # validated between steps, frozen again after each
    layers = batchnorm_layers(model.network)
    assert layers
    for bn in layers:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_sprint_validates_on_a_given_folder_and_leaves_it_out_of_training(gpu_modules, shared_data, tmp_path):
    """--val-dir: the CPU runs' fixed validation split; same-named training images are not trained on."""
    import shutil

    data_mod = importlib.import_module("_sprint_data")
    train400 = tmp_path / "train" / "Train400"  # 8 real Train400 images as the training root
    train400.mkdir(parents=True)
    for f in sorted((shared_data / "train" / "Train400").glob("*.png"))[:8]:
        shutil.copy(f, train400 / f.name)
    held = sorted(train400.glob("*.png"))[:2]
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    for f in held:
        shutil.copy(f, val_dir / f.name)
    data, levels, source = data_mod.load_data("denoise", (0.0, 75.0), tmp_path / "train", patch=24, val_count=8,
                                              val_crop=0, seed=0, smoke=False, val_dir=str(val_dir))
    names = {f.name for f in held}
    assert {v.name for v in data.val} == names  # whole 180 x 180 images (val_crop 0) at the paper's levels
    assert sorted(v.level for v in data.val) == sorted([15.0, 25.0, 50.0, 70.0] * 2)
    assert all(v.input.shape == (180, 180) for v in data.val)
    assert len(data.train) == len(list(train400.glob("*.png"))) - 2 and not names & {t.name for t in data.train}
    assert f"without the 2 validation images of {val_dir}" in source
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no validation images"):
        data_mod.load_data("denoise", (0.0, 75.0), tmp_path / "train", patch=24, val_count=8, val_crop=0, seed=0,
                           smoke=False, val_dir=str(empty))
    with pytest.raises(ValueError, match="smoke run"):
        data_mod.load_data("denoise", (0.0, 75.0), None, patch=24, val_count=2, val_crop=48, seed=0, smoke=True,
                           val_dir=str(val_dir))
