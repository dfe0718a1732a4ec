"""TrainConfig: validation of settings, TOML files, the learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from napari_memnet.training.config import TrainConfig, load_config


def test_defaults_per_task_and_optimizer():
    assert TrainConfig(task="sr").levels == (2, 3, 4)
    assert TrainConfig(task="denoise", levels=(30,)).levels == (30.0, 30.0)
    adam, sgd = TrainConfig(), TrainConfig(optimizer="sgd")
    assert (adam.resolved_schedule, sgd.resolved_schedule) == ("cosine", "step")
    assert sgd.resolved_lr == 0.1 and sgd.resolved_weight_decay == 1e-4
    assert TrainConfig(task="deblock", levels=(5, 50)).resolved_val_levels() == (10, 20, 30, 40)
    assert TrainConfig(task="denoise", levels=(0, 10)).resolved_val_levels() == (5.0,)


def test_fine_tuning_defaults_to_a_hundredth_of_the_learning_rate():
    # measured: Adam 1e-2 for 30 steps took memnet-denoise from 23.37 to 21.07-21.99 dB,
    # 1e-4 to 22.94-23.07 dB (docs/training.md)
    assert TrainConfig().resolved_lr == 1e-2
    assert TrainConfig(init="memnet-denoise").resolved_lr == pytest.approx(1e-4)
    assert TrainConfig(init="memnet-denoise", optimizer="sgd").resolved_lr == pytest.approx(1e-3)
    assert TrainConfig(init="memnet-denoise", lr=3e-3).resolved_lr == 3e-3


def test_bad_settings_are_all_named():
    with pytest.raises(ValueError) as err:
        TrainConfig(task="sr", levels=(2, 2.5), steps=0, optimizer="rmsprop", patch_size=4)
    msg = str(err.value)
    for part in ("sr levels", "steps", "optimizer", "patch_size"):
        assert part in msg


def test_schedules():
    cfg = TrainConfig(steps=100, lr=1e-3, lr_min=1e-5)
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(50) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert cfg.lr_at(100) == pytest.approx(1e-5)
    step = TrainConfig(optimizer="sgd", steps=90, lr_step=30)
    assert [step.lr_at(s) for s in (0, 29, 30, 89)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    warm = TrainConfig(steps=100, warmup_steps=10, lr=1e-3)
    assert warm.lr_at(0) == pytest.approx(1e-4) and warm.lr_at(10) == pytest.approx(1e-3)
    assert all(math.isfinite(cfg.lr_at(s)) for s in range(0, 200, 7))


def test_toml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "deblock"\nlevels = [10, 40]\nsteps = 50\n[arch]\nblocks = 2\nrecursions = 3\n')
    cfg = load_config(path, steps=70)
    assert cfg.task == "deblock" and cfg.levels == (10, 40) and cfg.steps == 70
    assert cfg.resolved_arch == {"blocks": 2, "recursions": 3, "channels": 64, "in_channels": 1, "multi_supervised": True}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text('task = "deblock"\nbatch = 3\n')
    with pytest.raises(ValueError, match="unknown training config keys.*batch"):
        load_config(path)
