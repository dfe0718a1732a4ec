"""The default model of a task on a device: one rule (models/defaults.py), read
from what the bundled cards measured (selection PSNR, speed per device kind)."""

from __future__ import annotations

import pytest
import torch

from napari_memnet.core.tasks import TASKS
from napari_memnet.models import build_model
from napari_memnet.models.defaults import MIN_MP_PER_S, choose, kind_of, model_choices, rank
from napari_memnet.models.files import default_model_name, list_models, save_model


def _saved(tmp_path, name, arch, selection=None, speed=None):
    torch.manual_seed(0)
    net = build_model("memnet", arch)
    extra = {}
    if selection is not None:
        extra["selection"] = {"benchmark": "Set12 sigma 15/25/50", "psnr": selection, "command": "memnet eval ..."}
    if speed is not None:
        extra["speed"] = {k: {"mp_per_s": v, "size": 2048, "command": "memnet bench ..."} for k, v in speed.items()}
    return save_model(net, name, task="denoise", directory=tmp_path, **extra)


PAPER = {"blocks": 2, "recursions": 2, "channels": 8}
FAST = {"blocks": 2, "recursions": 2, "channels": 8, "unshuffle": 2}


def test_cpu_takes_the_fast_model_and_cuda_the_better_one(tmp_path):
    paper = _saved(tmp_path, "paper", PAPER, selection=28.6, speed={"cpu": 0.015})
    fast = _saved(tmp_path, "fast", FAST, selection=27.9, speed={"cpu": 0.25})
    assert choose(rank([paper, fast], "denoise", "cpu"), "denoise") == "fast"  # the paper net is too slow there
    assert choose(rank([paper, fast], "denoise", "cuda"), "denoise") == "paper"  # no CUDA speed: quality decides
    better = _saved(tmp_path, "fast2", FAST, selection=29.1, speed={"cpu": 0.25})
    assert choose(rank([paper, better], "denoise", "cuda"), "denoise") == "fast2"
    ranked = rank([paper, fast], "denoise", "cpu")
    assert [c.name for c in ranked] == ["fast", "paper"] and not ranked[1].usable
    assert ranked[1].mp_per_s == 0.015 < MIN_MP_PER_S["cpu"]


def test_unmeasured_models_fall_back_to_the_registry(tmp_path):
    a = _saved(tmp_path, "a", PAPER)
    b = _saved(tmp_path, "memnet-denoise", PAPER)
    assert choose(rank([a, b], "denoise", "cpu"), "denoise") == TASKS["denoise"].default_model
    slow = _saved(tmp_path, "slow", PAPER, selection=30.0, speed={"cpu": 0.01})
    assert choose(rank([slow], "denoise", "cpu"), "denoise") == TASKS["denoise"].default_model
    assert choose(rank([slow], "denoise", "mps"), "denoise") == "slow"


def test_kind_labels():
    assert kind_of({"architecture": "memnet", "config": PAPER}) == "paper MemNet M2R2 C8"
    assert kind_of({"architecture": "memnet", "config": FAST}) == "fast MemNet M2R2 C8 s2"
    assert kind_of({"architecture": "red30", "config": {"layers": 15, "channels": 64}}).startswith("RED30")
    assert kind_of({"architecture": "mhnet", "config": {"channels": 16, "depth": 3}}) == "MHNet C16 depth 3"


@pytest.mark.parametrize("task", [name for name, task in TASKS.items() if task.default_model])
def test_bundled_defaults_follow_the_rule(task):
    """What the shipped cards say decides; every default is installed and listed first, marked."""
    bundled = [m for m in list_models(task) if m.source == "bundled"]
    name = default_model_name(task, "cpu")
    assert name in {m.name for m in bundled}
    assert name == choose(rank(bundled, task, "cpu"), task)
    label, first = model_choices(list_models(task), task, "cpu")[0]
    assert first == name and "default on cpu" in label


@pytest.mark.parametrize("task", list(TASKS))
def test_without_its_bundled_models_a_task_says_how_to_train_one(task, monkeypatch, tmp_path):
    """An install without a task's bundled weights (a trimmed install, or a task that ships none):
    nothing is marked the default, and restore without a model names the command that trains one."""
    import numpy as np

    import napari_memnet.models.files as modelfile
    from napari_memnet import restore
    from napari_memnet.models.files import ModelFileError

    monkeypatch.setattr(modelfile, "BUNDLED_DIR", tmp_path)
    assert all("default on" not in label for label, _ in model_choices(list_models(task), task, "cpu"))
    with pytest.raises(ModelFileError, match=f"memnet train --task {task}"):
        restore(np.zeros((16, 16), np.float32), task, device="cpu", scale=2 if task == "sr" else None)


def test_restore_uses_the_default_for_its_device():
    import numpy as np

    from napari_memnet.restoration.engine import Engine

    engine = Engine(None, task="denoise", device="cpu", precision="fp32")
    assert engine.model.name == default_model_name("denoise", "cpu")
    assert np.isfinite(engine.forward(np.zeros((8, 8), np.float32)).numpy()).all()
