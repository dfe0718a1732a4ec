"""BatchNorm recalibration: exact population statistics, weights untouched."""

from __future__ import annotations

import pytest
import torch

from napari_memnet.models import build_model
from napari_memnet.training.bn_calibration import recalibrate_batchnorm


def test_running_stats_become_the_average_over_the_batches():
    torch.manual_seed(0)
    net = build_model("memnet", {"blocks": 2, "recursions": 2, "channels": 8})
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.rand(4, 1, 12, 12) * (i + 1) for i in range(3)]
    assert recalibrate_batchnorm(net, iter(batches)) == 3
    assert not net.training
    input_bn = net.extract[0]  # the first BN sees the images themselves
    expected_mean = torch.stack([b.mean() for b in batches]).mean()
    expected_var = torch.stack([b.var() for b in batches]).mean()  # unbiased per batch, as BatchNorm keeps
    torch.testing.assert_close(input_bn.running_mean[0], expected_mean)
    torch.testing.assert_close(input_bn.running_var[0], expected_var)
    for key, value in net.state_dict().items():
        if key in weights:
            assert torch.equal(value, weights[key]), key
    assert input_bn.momentum == 0.1  # restored


def test_no_batches_is_an_error():
    net = build_model("memnet", {"blocks": 1, "recursions": 1, "channels": 4})
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batchnorm(net, [])


# ---------------------------------------------------------------- the trainer recalibrates at the end of a run
SMALL = {"blocks": 1, "recursions": 2, "channels": 8}


@pytest.fixture(scope="module")
def train_images(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))
    return [str(files[i]) for i in (0, 1, 3)]


def _config(out, **kw):
    from napari_memnet.training.config import TrainConfig

    # a constant, high learning rate: the weights move until the last step, so the running averages lag
    base = dict(task="denoise", levels=(0, 50), arch=SMALL, steps=30, batch_size=8, patch_size=24, val_count=1,
                val_crop=64, schedule="constant", lr=3e-2, validate_every=10, checkpoint_every=10, threads=1, seed=3,
                recalibrate_batches=6, out_dir=str(out), model_dir=str(out), name="bn")
    base.update(kw)
    return TrainConfig(**base)


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _checkpoint_model(out):
    from napari_memnet.training.checkpoint import CHECKPOINT_NAME, read_checkpoint

    tensors, meta = read_checkpoint(out / CHECKPOINT_NAME)
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, meta


def _is_running_stat(key: str) -> bool:
    return "running_" in key or "num_batches_tracked" in key


def test_a_run_ends_by_recalibrating_and_the_saved_model_has_those_statistics(train_images, tmp_path):
    from napari_memnet.models.files import load_model
    from napari_memnet.training import events as ev
    from napari_memnet.training.bn_calibration import batchnorm_layers
    from napari_memnet.training.sampler import PatchSampler
    from napari_memnet.training.trainer import RECALIBRATION_SEED_OFFSET, Trainer

    cfg = _config(tmp_path)
    trainer = Trainer(cfg, clean=train_images)
    events = list(trainer.run())
    kinds = [(type(e).__name__, e.step) for e in events if not isinstance(e, ev.Step)]
    # the last checkpoint (raw training state) first, then the recalibration, then the one final validation
    assert kinds[-4:] == [("CheckpointSaved", 30), ("BatchNormRecalibrated", 30), ("Validation", 30), ("Finished", 30)]
    assert kinds.count(("Validation", 30)) == 1 and ("Validation", 20) in kinds  # the intermediate ones as before
    recal, final, done = events[-3], events[-2], events[-1]
    layers = len(batchnorm_layers(trainer.net))
    assert (recal.batches, recal.batch_size, recal.layers) == (6, 8, layers) and layers > 0
    assert done.psnr == pytest.approx(final.psnr)

    saved = _tensors(tmp_path / "bn.safetensors")
    raw, meta = _checkpoint_model(tmp_path)
    assert meta["step"] == 30 and saved.keys() == raw.keys()
    for key in saved:  # the weights are the trained ones; only the BatchNorm statistics differ
        if not _is_running_stat(key):
            assert torch.equal(saved[key], raw[key]), key
    moved = [k for k in saved if "running_mean" in k and not torch.allclose(saved[k], raw[k], atol=1e-4)]
    assert len(moved) >= layers // 2, moved

    # the same recalibration done independently: the raw checkpoint weights, batches of the run's own data
    # drawn by a sampler seeded seed + RECALIBRATION_SEED_OFFSET
    net = load_model(tmp_path / "bn.safetensors").network
    net.load_state_dict(raw)
    net.to(memory_format=torch.channels_last)
    sampler = PatchSampler(trainer.data.train, "denoise", (0, 50), 24, 3 + RECALIBRATION_SEED_OFFSET, "cpu")
    batches = [sampler.batch(8)[0].contiguous(memory_format=torch.channels_last) for _ in range(6)]
    callers = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # the run's thread count (its own while it ran): sums' order depends on it
    try:
        assert recalibrate_batchnorm(net, batches) == 6
    finally:
        torch.set_num_threads(callers)
    expected = net.state_dict()
    for key in saved:
        if _is_running_stat(key):
            torch.testing.assert_close(saved[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)

    card = load_model(tmp_path / "bn.safetensors").card
    assert card["training"]["batchnorm_recalibration"] == {"step": 30, "batches": 6, "batch_size": 8,
                                                           "patch_size": 24, "seed": 3 + RECALIBRATION_SEED_OFFSET,
                                                           "layers": layers}
    assert card["training"]["validation_psnr_after"] == pytest.approx(final.psnr)
    assert {m["level"]: m["psnr"] for m in card["metrics"]} == pytest.approx(
        {level: v["psnr"] for level, v in final.per_level.items()}, abs=1e-3)
    # the reported number is the saved model's: validating the loaded model again gives it
    trainer.net.load_state_dict(load_model(tmp_path / "bn.safetensors").network.state_dict())
    assert trainer.validate().psnr == pytest.approx(final.psnr, abs=1e-4)


def test_recalibrate_batches_zero_keeps_the_statistics_of_training(train_images, tmp_path):
    from napari_memnet.models.files import load_model
    from napari_memnet.training import events as ev
    from napari_memnet.training.trainer import Trainer

    events = list(Trainer(_config(tmp_path / "off", recalibrate_batches=0), clean=train_images).run())
    assert not any(isinstance(e, ev.BatchNormRecalibrated) for e in events)
    kinds = [(type(e).__name__, e.step) for e in events if not isinstance(e, ev.Step)]
    assert kinds[-3:] == [("Validation", 30), ("CheckpointSaved", 30), ("Finished", 30)]  # as before
    saved = _tensors(tmp_path / "off" / "bn.safetensors")
    raw, _ = _checkpoint_model(tmp_path / "off")
    for key in saved:
        assert torch.equal(saved[key], raw[key]), key
    assert "batchnorm_recalibration" not in load_model(tmp_path / "off" / "bn.safetensors").card["training"]

    # the recalibrating run trained exactly the same: its checkpoint equals this run's
    list(Trainer(_config(tmp_path / "on"), clean=train_images).run())
    other, _ = _checkpoint_model(tmp_path / "on")
    for key in raw:
        assert torch.equal(other[key], raw[key]), key


def test_a_stopped_run_recalibrates_and_still_resumes_exactly(train_images, tmp_path):
    import threading

    from napari_memnet.training import events as ev
    from napari_memnet.training.trainer import Trainer

    list(Trainer(_config(tmp_path / "one", steps=16, checkpoint_every=100, validate_every=100),
                 clean=train_images).run())
    stop = threading.Event()
    cfg = _config(tmp_path / "two", steps=16, checkpoint_every=100, validate_every=100)
    seen = []
    for event in Trainer(cfg, clean=train_images, stop=stop).run():
        seen.append(event)
        if isinstance(event, ev.Step) and event.step == 8:
            stop.set()
    kinds = [(type(e).__name__, e.step) for e in seen if not isinstance(e, ev.Step)]
    assert kinds[-4:] == [("CheckpointSaved", 8), ("BatchNormRecalibrated", 8), ("Validation", 8), ("Finished", 8)]
    assert seen[-1].stopped
    stopped_model = _tensors(tmp_path / "two" / "bn.safetensors")
    raw, _ = _checkpoint_model(tmp_path / "two")
    assert any(not torch.equal(stopped_model[k], raw[k]) for k in raw if "running_mean" in k)

    resumed = Trainer(cfg, clean=train_images, resume=True)
    assert resumed.step == 8
    list(resumed.run())
    a = _tensors(tmp_path / "one" / "bn.safetensors")
    b = _tensors(tmp_path / "two" / "bn.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # weights and recalibrated statistics alike
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_recalibrate_batches_in_the_config_and_on_the_command_line(tmp_path):
    from napari_memnet.cli import build_parser
    from napari_memnet.commands.train import build_config
    from napari_memnet.training.config import TrainConfig, load_config

    assert TrainConfig().recalibrate_batches == 20
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="recalibrate_batches must be an integer >= 0"):
            TrainConfig(recalibrate_batches=bad)
    toml = tmp_path / "run.toml"
    toml.write_text('task = "denoise"\nrecalibrate_batches = 0\n', "utf-8")
    assert load_config(toml).recalibrate_batches == 0
    args = build_parser().parse_args(["train", "--config", str(toml), "--out-dir", str(tmp_path),
                                      "--recalibrate-batches", "40"])
    assert build_config(args).recalibrate_batches == 40
    args = build_parser().parse_args(["train", "--config", str(toml), "--out-dir", str(tmp_path)])
    assert build_config(args).recalibrate_batches == 0


def test_the_train_widgets_last_preview_shows_the_recalibrated_model(train_images, tmp_path):
    """The widget's worker previews at validations; the final validation comes at the same
    step as the last scheduled one but after recalibration, so it must preview again."""
    import threading
    from dataclasses import asdict

    import numpy as np

    from napari_memnet._widgets.train_data import DataRequest
    from napari_memnet._widgets.train_job import Preview, train_job
    from napari_memnet.training.events import BatchNormRecalibrated

    kwargs = {k: v for k, v in asdict(_config(tmp_path, steps=10)).items()}
    job = train_job(DataRequest(source="folder", clean=train_images), kwargs, resume=False,
                    stop=threading.Event(), preview_every=5)
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as done:
        outcome = done.value
    assert outcome.finished is not None and outcome.error is None
    kinds = [type(e).__name__ for e in events]
    recal = kinds.index(BatchNormRecalibrated.__name__)
    previews_after = [e for e in events[recal:] if isinstance(e, Preview)]
    before = [e for e in events[:recal] if isinstance(e, Preview) and e.step == 10]
    assert len(previews_after) == 1 and previews_after[0].step == 10 and len(before) == 1
    # the two step-10 previews differ: the second shows the recalibrated statistics
    assert not np.array_equal(before[0].data, previews_after[0].data)
