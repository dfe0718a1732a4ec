"""The trainer: learning on real images, exact resume after a killed process, stop requests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_memnet.training import events as ev
from napari_memnet.training.checkpoint import CHECKPOINT_NAME, read_checkpoint
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.trainer import Trainer

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = {"blocks": 2, "recursions": 2, "channels": 16}


@pytest.fixture(scope="module")
def images(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))
    # test_001/002 to train on, test_004 (similar mean brightness: after a few dozen steps on two images
    # the eval-mode BatchNorm statistics fit images of that brightness) held out
    return [str(files[i]) for i in (0, 1, 3)]


def test_validation_psnr_rises_above_the_noisy_input(images, tmp_path):
    cfg = TrainConfig(task="denoise", levels=(25, 25), arch=TINY, steps=60, batch_size=16, patch_size=31,
                      val_crop=96, validate_every=60, checkpoint_every=60, threads=1, seed=1, lr=1e-2,
                      out_dir=str(tmp_path / "run"), model_dir=str(tmp_path / "models"), name="tiny-dn")
    trainer = Trainer(cfg, clean=images[:2], validation=images[2:])
    events = list(trainer.run())
    vals = [e for e in events if isinstance(e, ev.Validation)]
    steps = [e for e in events if isinstance(e, ev.Step)]
    assert isinstance(events[0], ev.Started) and isinstance(events[-1], ev.Finished)
    assert [e.step for e in steps] == list(range(1, 61))
    assert all(len(e.branch_losses) == 2 and len(e.branch_weights) == 2 and e.patches_per_s > 0 for e in steps)
    first, last = vals[0], vals[-1]
    assert first.step == 0 and last.step == 60
    assert abs(first.baseline_psnr - 20.2) < 0.5  # sigma 25 noise
    assert last.psnr > last.baseline_psnr + 2.0, (first, last)
    assert last.base_model_psnr == pytest.approx(first.psnr)
    done = events[-1]
    from napari_memnet.models.files import load_model

    model = load_model(Path(done.model_path))
    card = model.card
    assert card["task"] == "denoise" and card["levels"] == {"sigma_range": [25.0, 25.0]}
    assert card["training"]["steps"] == 60
    assert card["training"]["validation_psnr_after"] == pytest.approx(last.psnr)
    assert card["training"]["validation_psnr_before"] == pytest.approx(first.psnr)
    assert card["metrics"][0]["psnr"] == pytest.approx(last.psnr, abs=1e-3)
    lines = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    assert '"event": "finished"' in lines[-1]


_CRASH = textwrap.dedent("""
    import os, sys, signal
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer
    cfg = TrainConfig.from_dict(__import__("json").loads(sys.argv[1]))
    for e in Trainer(cfg, clean=sys.argv[2:], resume=True).run():
        if type(e).__name__ == "CheckpointSaved" and e.step == 10:
            os.kill(os.getpid(), signal.SIGKILL)   # a real crash right after the step-10 checkpoint
""")


def test_resume_after_a_killed_process_gives_the_same_weights(images, tmp_path):
    import json

    import torch
    from safetensors.torch import load_file

    def cfg(out):
        return TrainConfig(task="denoise", levels=(0, 50), arch={"blocks": 2, "recursions": 2, "channels": 8}, steps=20,
                           batch_size=8, patch_size=24, val_count=1, val_crop=48, checkpoint_every=10,
                           validate_every=100, log_every=1, threads=1, seed=5, out_dir=str(out), model_dir=str(out), name="m")

    one_go = cfg(tmp_path / "one")
    list(Trainer(one_go, clean=images).run())
    crashed = cfg(tmp_path / "two")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", _CRASH, json.dumps(crashed.to_dict()), *images], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    tensors, meta = read_checkpoint(tmp_path / "two" / CHECKPOINT_NAME)
    assert meta["step"] == 10 and not (tmp_path / "two" / "m.safetensors").exists()
    resumed = Trainer(cfg(tmp_path / "two"), clean=images, resume=True)
    assert resumed.step == 10
    events = list(resumed.run())
    steps = [e.step for e in events if isinstance(e, ev.Step)]
    assert steps == list(range(11, 21)) and events[0].resumed
    a = load_file(str(tmp_path / "one" / "m.safetensors"))
    b = load_file(str(tmp_path / "two" / "m.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    # the loss curve continues: the resumed run's log holds steps 1..10 and 11..20
    logged = [json.loads(x) for x in (tmp_path / "two" / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["event"] == "step"] == list(range(1, 21))


def test_training_leaves_the_callers_random_state_alone(images, tmp_path):
    """A run (the Train widget's in napari's process, a script's) neither reseeds nor advances the
    process's python, numpy and torch generators, also when it resumes, and its initial weights are
    those of its seed whatever state the caller left them in."""
    import random

    import torch

    def cfg(out, steps):
        return TrainConfig(task="denoise", levels=(0, 50), arch={"blocks": 2, "recursions": 2, "channels": 8},
                           steps=steps, batch_size=4, patch_size=24, val_count=1, val_crop=48, checkpoint_every=2,
                           validate_every=100, threads=1, seed=5, out_dir=str(out), model_dir=str(out), name="m")

    def state():
        return random.getstate(), np.random.get_state(), torch.get_rng_state()

    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = state()
    first = Trainer(cfg(tmp_path / "run", 2), clean=images)
    initial = {k: v.clone() for k, v in first.net.state_dict().items()}
    list(first.run())
    resumed = Trainer(cfg(tmp_path / "run", 4), clean=images, resume=True)
    assert resumed.step == 2
    list(resumed.run())
    after = state()
    assert after[0] == before[0]
    assert after[1][0] == before[1][0] and np.array_equal(after[1][1], before[1][1]) and after[1][2:] == before[1][2:]
    assert torch.equal(after[2], before[2])
    torch.manual_seed(12345)  # another state of the caller's: the same initial weights
    other = Trainer(cfg(tmp_path / "other", 2), clean=images).net.state_dict()
    assert other.keys() == initial.keys()
    assert all(torch.equal(other[k], initial[k]) for k in initial)


def test_threads_are_the_runs_only_while_it_runs(images, tmp_path):
    """``threads`` sets torch's (process-wide) CPU threads during the run only: the caller's number is
    back after a run, and after a run closed half-way (a generator dropped by its consumer)."""
    import torch

    callers = torch.get_num_threads()
    wanted = 1 if callers != 1 else 2
    cfg = TrainConfig(task="denoise", levels=(0, 50), arch={"blocks": 1, "recursions": 1, "channels": 8}, steps=2,
                      batch_size=2, patch_size=24, val_count=1, val_crop=48, validate_every=100, threads=wanted,
                      model_dir=str(tmp_path), name="t")
    trainer = Trainer(cfg, clean=images)
    assert torch.get_num_threads() == callers  # building the run does not set them
    seen = []
    for event in trainer.run():
        seen.append(torch.get_num_threads())
    assert set(seen) == {wanted} and torch.get_num_threads() == callers
    events = Trainer(cfg, clean=images, overwrite=True).run()
    next(events)
    assert torch.get_num_threads() == wanted
    events.close()
    assert torch.get_num_threads() == callers


def test_stop_request_mid_run_leaves_a_checkpoint_and_a_usable_model(images, tmp_path):
    import threading

    from napari_memnet.models.files import load_model

    stop = threading.Event()
    cfg = TrainConfig(task="sr", levels=(2, 3), arch={"blocks": 2, "recursions": 2, "channels": 8}, steps=500,
                      batch_size=4, val_count=1, val_crop=48, checkpoint_every=1000, validate_every=1000,
                      threads=1, out_dir=str(tmp_path / "run"), model_dir=str(tmp_path), name="stopped")
    trainer = Trainer(cfg, clean=images, stop=stop)
    seen = []
    for event in trainer.run():
        seen.append(event)
        if isinstance(event, ev.Step) and event.step == 5:
            stop.set()
    finished = seen[-1]
    assert isinstance(finished, ev.Finished) and finished.stopped and finished.step == 5
    assert any(isinstance(e, ev.CheckpointSaved) and e.step == 5 for e in seen)
    _, meta = read_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert meta["step"] == 5 and meta["config"]["task"] == "sr"
    model = load_model(tmp_path / "stopped.safetensors")
    assert model.card["training"]["steps"] == 5
    out = model.inference_module()(__import__("torch").rand(1, 1, 40, 40))
    assert out.shape == (1, 1, 40, 40) and np.isfinite(out.numpy()).all()


def test_existing_checkpoint_needs_resume(images, tmp_path):
    cfg = TrainConfig(task="deblock", levels=(10, 30), arch={"blocks": 1, "recursions": 1, "channels": 8}, steps=2,
                      batch_size=2, val_count=1, val_crop=32, threads=1, out_dir=str(tmp_path), model_dir=str(tmp_path),
                      name="d")
    events = list(Trainer(cfg, clean=images).run())
    assert isinstance(events[-1], ev.Finished)
    with pytest.raises(ValueError, match="resume"):
        Trainer(cfg, clean=images)
    again = Trainer(cfg, clean=images, resume=True)
    assert again.step == 2
    assert isinstance(list(again.run())[-1], ev.Finished)


def test_a_failure_during_training_is_an_event(images, tmp_path):
    cfg = TrainConfig(task="denoise", levels=(25, 25), arch={"blocks": 1, "recursions": 1, "channels": 8}, steps=3,
                      batch_size=2, val_count=1, val_crop=32, threads=1, model_dir=str(tmp_path), name="f")
    trainer = Trainer(cfg, clean=images)
    trainer.data.val[0].input = np.zeros((5, 5), np.float32)  # breaks validation: shapes differ
    events = list(trainer.run())
    assert isinstance(events[-1], ev.Failed)
    assert "ValueError" in events[-1].error and trainer.error is not None


def test_red30_trains_with_the_plain_loss(images, tmp_path):
    cfg = TrainConfig(task="denoise", levels=(10, 40), architecture="red30", arch={"layers": 4, "channels": 8}, steps=3,
                      batch_size=4, val_count=1, val_crop=48, threads=1, model_dir=str(tmp_path), name="red")
    events = list(Trainer(cfg, clean=images).run())
    steps = [e for e in events if isinstance(e, ev.Step)]
    assert len(steps) == 3 and all(e.branch_losses == [] and e.branch_weights == [] for e in steps)
    # no BatchNorm in RED30: the default recalibration (recalibrate_batches=20) has nothing to do
    assert not any(isinstance(e, ev.BatchNormRecalibrated) for e in events) and isinstance(events[-1], ev.Finished)
    from napari_memnet.models.files import load_model

    model = load_model(tmp_path / "red.safetensors")
    assert model.architecture == "red30" and model.card["config"]["layers"] == 4
    assert "batchnorm_recalibration" not in model.card["training"]
