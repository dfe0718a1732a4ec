"""``init`` (``memnet train --init``) given another run's training checkpoint: a new run starts from
that run's network and weight average, with its own optimizer, schedule and step 0."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from napari_memnet.models.files import load_model
from napari_memnet.training import events as ev
from napari_memnet.training.checkpoint import (_META_KEY, CHECKPOINT_NAME, is_checkpoint, network_from_checkpoint,
                                               read_checkpoint, save_checkpoint)
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.trainer import Trainer

ARCH = {"blocks": 2, "recursions": 2, "channels": 8, "unshuffle": 2, "shared_recursions": False}


@pytest.fixture(scope="module")
def images(shared_data):
    files = sorted((shared_data / "train" / "Train400").glob("*.png"))
    return [str(files[i]) for i in (0, 1, 3)]


def _config(tmp_path, name, **kw):
    return TrainConfig(**{"task": "denoise", "levels": (25, 25), "steps": 8, "batch_size": 4, "patch_size": 32,
                          "val_crop": 64, "validate_every": 8, "checkpoint_every": 8, "threads": 1, "seed": 3,
                          "ema": 0.9, "out_dir": str(tmp_path / name), "model_dir": str(tmp_path / "models"),
                          "name": name, **kw})


def test_a_run_branches_from_another_runs_checkpoint(images, tmp_path):
    first = Trainer(_config(tmp_path, "first", arch=ARCH, lr=1e-2), clean=images[:2], validation=images[2:])
    events = list(first.run())
    assert isinstance(events[-1], ev.Finished)
    ckpt = tmp_path / "first" / CHECKPOINT_NAME
    assert is_checkpoint(ckpt) and not is_checkpoint(events[-1].model_path)  # a model file is not a checkpoint
    tensors, meta = read_checkpoint(ckpt)
    assert meta["network"]["architecture"] == "memnet" and meta["network"]["config"]["unshuffle"] == 2

    second = Trainer(_config(tmp_path, "second", init=str(ckpt), steps=4), clean=images[:2], validation=images[2:])
    assert second.step == 0 and second.base_model_name == f"{ckpt} (step 8)"
    assert second.net.config == first.net.config
    # the first run's weight average as its checkpoint holds it (before the closing BatchNorm recalibration
    # that only its model file has), not its raw weights
    start = {k: v.clone() for k, v in second.net.state_dict().items()}
    assert all(torch.equal(v, tensors[f"ema.{k}"]) for k, v in start.items())
    assert not all(torch.equal(v, tensors[f"model.{k}"]) for k, v in start.items())
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(second.config.resolved_lr)
    assert second.config.resolved_lr == pytest.approx(first.config.resolved_lr / 100)  # a fine-tune's rate
    events = list(second.run())
    assert isinstance(events[-1], ev.Finished) and events[-1].step == 4
    assert not torch.equal(second.net.extract[2].weight, start["extract.2.weight"])  # it trained on from there
    card = load_model(events[-1].model_path).card
    assert card["base_model"] == f"{ckpt} (step 8)"


def test_a_checkpoint_without_the_network_record(tmp_path):
    """Older checkpoints: the network from the run's config, or a clear refusal where a model started the run."""
    from napari_memnet.models import build_model

    net = build_model("memnet", ARCH)
    opt = torch.optim.Adam(net.parameters())
    path = save_checkpoint(tmp_path / "old.safetensors", model=net, optimizer=opt, step=5,
                           config=TrainConfig(arch=ARCH).to_dict())
    # drop the record, as a checkpoint of before 2026-12-04 has none
    tensors, meta = read_checkpoint(path)
    del meta["network"]
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(meta)})
    rebuilt, _ = network_from_checkpoint(path)
    assert rebuilt.config == net.config
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in rebuilt.state_dict().items())

    meta["config"] = TrainConfig(init="memnet-fast-denoise").to_dict()
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(meta)})
    with pytest.raises(ValueError, match=r"started from 'memnet-fast-denoise'.*--resume --steps 6"):
        network_from_checkpoint(path)
