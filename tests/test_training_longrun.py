"""Long CPU runs that are never lost: a wall-clock budget, time-based
checkpoints, a weight average (EMA) that survives a killed process exactly,
the best-so-far model, and the pixel losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from napari_memnet.models.files import load_model
from napari_memnet.training import events as ev
from napari_memnet.training.checkpoint import CHECKPOINT_NAME, read_checkpoint
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.ema import WeightAverage
from napari_memnet.training.losses import pixel_loss, supervised_loss
from napari_memnet.training.trainer import BEST_DIR, Trainer

SRC = str(Path(__file__).resolve().parents[1] / "src")
FAST = {"blocks": 2, "recursions": 2, "channels": 8, "unshuffle": 2}


@pytest.fixture(scope="module")
def images(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))
    return [str(files[i]) for i in (0, 1, 3)]


def config(out: Path, **kw) -> TrainConfig:
    base = dict(task="denoise", levels=(0, 50), arch=FAST, steps=20, batch_size=4, patch_size=24, val_count=1,
                val_crop=48, checkpoint_every=10, validate_every=100, log_every=1, threads=1, seed=5,
                out_dir=str(out), model_dir=str(out), name="m")
    base.update(kw)
    return TrainConfig(**base)


_CRASH = textwrap.dedent("""
    import os, sys, signal, json
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer
    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    for e in Trainer(cfg, clean=sys.argv[2:], resume=True).run():
        if type(e).__name__ == "CheckpointSaved" and e.step == 10:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_weight_average_survives_a_killed_process_exactly(images, tmp_path):
    from safetensors.torch import load_file

    one = config(tmp_path / "one", ema=0.9)
    list(Trainer(one, clean=images).run())
    two = config(tmp_path / "two", ema=0.9)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", _CRASH, json.dumps(two.to_dict()), *images], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    tensors, meta = read_checkpoint(tmp_path / "two" / CHECKPOINT_NAME)
    assert meta["ema_updates"] == 10 and any(k.startswith("ema.") for k in tensors)
    resumed = Trainer(config(tmp_path / "two", ema=0.9), clean=images, resume=True)
    assert resumed.ema.updates == 10
    list(resumed.run())
    a = load_file(str(tmp_path / "one" / "m.safetensors"))
    b = load_file(str(tmp_path / "two" / "m.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    card = load_model(tmp_path / "one" / "m.safetensors").card
    assert card["training"]["ema_decay"] == 0.9
    # the saved model is the average, not the last weights
    raw = {k[len("model."):]: v for k, v in read_checkpoint(tmp_path / "one" / CHECKPOINT_NAME)[0].items()
           if k.startswith("model.")}
    assert not torch.allclose(raw["extract.2.weight"], a["extract.2.weight"])


def test_ema_update_rule():
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    avg.update(net)  # first update: decay min(0.5, 1/10) = 0.1 -> 0.9
    assert float(avg.network.weight[0, 0]) == pytest.approx(0.9)
    for _ in range(20):
        avg.update(net)
    assert float(avg.network.weight[0, 0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def test_a_minute_budget_stops_cleanly_and_resume_continues(images, tmp_path):
    cfg = config(tmp_path, steps=10**6, minutes=0.03, checkpoint_every=10**6, checkpoint_minutes=0.005)
    events = list(Trainer(cfg, clean=images).run())
    done = events[-1]
    assert isinstance(done, ev.Finished) and done.stopped and 0 < done.step < 10**6
    checkpoints = [e for e in events if isinstance(e, ev.CheckpointSaved)]
    assert len(checkpoints) >= 2  # time-based ones during the run, and the one at the stop
    assert checkpoints[-1].step == done.step
    assert load_model(tmp_path / "m.safetensors").card["training"]["steps"] == done.step
    again = Trainer(cfg, clean=images, resume=True)
    assert again.step == done.step
    more = list(again.run())
    assert more[-1].step > done.step


def test_the_best_validation_is_saved_as_it_happens(images, tmp_path):
    cfg = config(tmp_path, steps=6, validate_every=2, lr=5e-3)
    events = list(Trainer(cfg, clean=images).run())
    vals = [e for e in events if isinstance(e, ev.Validation) and e.step > 0]
    best_events = [e for e in events if isinstance(e, ev.BestModelSaved)]
    assert best_events and best_events[0].step == vals[0].step
    assert [b.psnr for b in best_events] == sorted(b.psnr for b in best_events)  # each beats the last
    top = best_events[-1]
    best = load_model(tmp_path / BEST_DIR / "m.safetensors")
    assert Path(top.path) == tmp_path / BEST_DIR / "m.safetensors"
    assert best.card["training"]["validation_psnr_after"] == pytest.approx(top.psnr)
    assert best.card["training"]["seconds"] > 0  # the time trained until then, not a placeholder
    # validations inside the loop (steps 2, 4) compete; the last one follows the BatchNorm recalibration
    assert top.psnr == pytest.approx(max(v.psnr for v in vals if v.step < 6))
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert any(x["event"] == "best_model" for x in lines)


def test_losses():
    pred, target = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)
    assert float(pixel_loss("l2", pred, target)) == pytest.approx(0.125)
    assert float(pixel_loss("l1", pred, target)) == pytest.approx(0.5)
    assert float(pixel_loss("charbonnier", pred, target)) == pytest.approx((0.25 + 1e-6) ** 0.5)
    from napari_memnet.models import multi_supervised_loss

    branches = [torch.rand(1, 1, 3, 3) for _ in range(3)]
    final, tgt = torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3)
    assert torch.allclose(supervised_loss("l2", final, branches, tgt)[0], multi_supervised_loss(final, branches, tgt)[0])
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="l3")
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.5)
    with pytest.raises(ValueError, match="minutes"):
        TrainConfig(minutes=0)


def test_balanced_l1_weighs_every_patch_by_its_relative_error(images, tmp_path):
    from napari_memnet.training.losses import BALANCE_FLOOR

    torch.manual_seed(0)
    target = torch.rand(4, 1, 8, 8)
    scale = torch.tensor([0.002, 0.02, 0.1, 0.3]).view(4, 1, 1, 1)  # a low-noise patch ... a high-noise one
    pred = (target + scale * torch.randn(4, 1, 8, 8)).requires_grad_(True)
    loss = pixel_loss("l1-balanced", pred, target)
    per = (pred - target).abs().flatten(1).mean(1).detach()
    weights = 1.0 / (per + BALANCE_FLOOR)
    assert loss.item() == pytest.approx(float((weights / weights.mean() * per).mean()), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, pred)
    # the gradient of the batch mean of log(L1_i + floor), times the constant 1 / mean(w)
    pred2 = pred.detach().clone().requires_grad_(True)
    log_loss = torch.log((pred2 - target).abs().flatten(1).mean(1) + BALANCE_FLOOR).mean() / weights.mean()
    (expected,) = torch.autograd.grad(log_loss, pred2)
    assert torch.allclose(grad, expected, rtol=1e-5, atol=1e-9)
    size = grad.abs().flatten(1).mean(1)
    assert size[0] > size[1] > size[2] > size[3]  # plain L1 gives every pixel the same |gradient|
    same = torch.full((3, 1, 2, 2), 0.5)  # equal errors: the plain L1
    assert float(pixel_loss("l1-balanced", same, torch.zeros(3, 1, 2, 2))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(N, \.\.\.\) samples"):
        pixel_loss("l1-balanced", pred[0, 0, 0], target[0, 0, 0])
    with pytest.raises(ValueError, match="l1-balanced weighs whole samples"):
        TrainConfig(loss="l1-balanced", noisy_dir=str(tmp_path))
    trainer = Trainer(config(tmp_path, loss="l1-balanced", steps=3), clean=images)
    steps = [e for e in trainer.run() if isinstance(e, ev.Step)]
    assert len(steps) == 3 and all(torch.isfinite(torch.tensor(e.loss)) for e in steps)


def test_cli_flags_reach_the_config(images, tmp_path):
    from napari_memnet.cli import main

    out = tmp_path / "run"
    code = main(["train", "--task", "denoise", "--clean-dir", str(Path(images[0]).parent), "--val-count", "1",
                 "--blocks", "1", "--recursions", "1", "--channels", "8", "--unshuffle", "2", "--loss", "l1",
                 "--ema", "0.99", "--minutes", "5", "--checkpoint-minutes", "2", "--steps", "2", "--batch", "2",
                 "--patch", "24", "--val-crop", "32", "--threads", "1", "--out-dir", str(out), "--name", "cli-fast"])
    assert code == 0
    _, meta = read_checkpoint(out / CHECKPOINT_NAME)
    cfg = meta["config"]
    assert (cfg["arch"]["unshuffle"], cfg["loss"], cfg["ema"], cfg["minutes"], cfg["checkpoint_minutes"]) == \
        (2, "l1", 0.99, 5.0, 2.0)
    assert load_model(out / "cli-fast.safetensors").network.config.unshuffle == 2
