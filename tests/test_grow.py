"""Growing a trained MemNet (more blocks / recursions) without changing what it computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nets import random_memnet
from napari_memnet import save_model
from napari_memnet.models import inference_module
from napari_memnet.models.grow import grow_memnet
from napari_memnet.training.config import TrainConfig
from napari_memnet.training.trainer import Trainer


def _trained_like(blocks=2, recursions=2, unshuffle=1, seed=0):
    """A tiny MemNet with random BatchNorm statistics and branch weights that are not 1/M."""
    net = random_memnet(blocks, recursions, 8, seed=seed, unshuffle=unshuffle)
    with torch.no_grad():
        net.branch_weights.copy_(torch.linspace(0.3, 0.8, blocks))
    return net


@pytest.mark.parametrize("unshuffle", [1, 2])
@pytest.mark.parametrize("blocks,recursions", [(2, 3), (3, 2), (4, 4)])
def test_a_grown_net_computes_what_the_base_did(blocks, recursions, unshuffle):
    base = _trained_like(unshuffle=unshuffle)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    grown = grow_memnet(base, blocks, recursions).eval()
    assert (grown.config.blocks, grown.config.recursions) == (blocks, recursions)
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in base.parameters())
    x = torch.rand(2, 1, 23, 30)
    with torch.no_grad():
        y0 = base(x)
        assert torch.allclose(grown(x), y0, atol=1e-6)
        # and the BN-folded inference form of the grown net too
        assert torch.allclose(inference_module(grown)(x), y0, atol=1e-5)
    # the base is untouched
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_the_new_parts_are_trainable_and_change_the_output():
    """Zero gate weights and a zero branch weight start the new parts; one gradient step moves them."""
    grown = grow_memnet(_trained_like(), 3, 3).train()
    x, target = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    final, branches = grown(x, return_branches=True)
    loss = sum(((b - target) ** 2).mean() for b in branches) + ((final - target) ** 2).mean()
    loss.backward()
    assert grown.branch_weights.grad[2].abs() > 0  # the new branch weight
    c = grown.config.channels
    new_recursion = grown.blocks[0].gate.conv.weight.grad[:, (1 + 2) * c:]  # H^3 of block 1
    assert new_recursion.abs().sum() > 0
    assert grown.blocks[2].recursive.conv_a.weight.grad.abs().sum() > 0  # the new block learns from its branch


def test_what_cannot_grow_is_refused_with_the_reason():
    base = _trained_like()
    with pytest.raises(ValueError, match="can only grow"):
        grow_memnet(base, 1, 2)
    with pytest.raises(ValueError, match="can only grow"):
        grow_memnet(base, 2, 1)
    plain = random_memnet(2, 2, 8)
    plain_cfg = plain.config.__class__(**{**plain.config.to_dict(), "multi_supervised": False})
    from napari_memnet.models import MemNet

    with pytest.raises(ValueError, match="multi-supervised"):
        grow_memnet(MemNet(plain_cfg), 3, 2)
    # a plain net can still gain recursions
    assert grow_memnet(MemNet(plain_cfg), 2, 3).config.recursions == 3


def test_init_with_other_architecture_settings_is_refused(tmp_path):
    with pytest.raises(ValueError, match="only blocks, recursions, shared_recursions may"):
        TrainConfig(init="memnet-fast-denoise", arch={"channels": 32})
    TrainConfig(init="memnet-fast-denoise", arch={"blocks": 3, "recursions": 4})  # growth: accepted
    from napari_memnet import fine_tune  # the Python API goes by the same rule

    images = [np.zeros((32, 32), np.float32)] * 3
    with pytest.raises(ValueError, match="fixes the architecture"):
        fine_tune(images, task="denoise", base_model="memnet-fast-denoise", architecture={"unshuffle": 4},
                  name="grown", steps=1, out_dir=str(tmp_path))


def test_training_from_a_grown_model(tmp_path, shared_data):
    """``init`` + blocks/recursions: the trainer grows the base model and trains and saves the grown shape."""
    base = _trained_like()
    save_model(base, "tiny-base", task="denoise", directory=tmp_path)
    clean = shared_data / "test" / "Set12"
    cfg = TrainConfig(task="denoise", levels=(25, 25), init=str(tmp_path / "tiny-base.safetensors"),
                      arch={"blocks": 3, "recursions": 3}, clean_dir=str(clean), val_count=2, val_crop=48,
                      steps=2, batch_size=2, patch_size=24, lr=1e-4, validate_every=2, out_dir=str(tmp_path / "run"),
                      model_dir=str(tmp_path / "out"), name="tiny-grown", recalibrate_batches=0, threads=1)
    trainer = Trainer(cfg)
    assert (trainer.net.config.blocks, trainer.net.config.recursions) == (3, 3)
    events = list(trainer.run())
    from napari_memnet.models.files import load_model

    saved = load_model(tmp_path / "out" / "tiny-grown.safetensors").network
    assert (saved.config.blocks, saved.config.recursions) == (3, 3)
    assert events[-1].model_path.endswith("tiny-grown.safetensors")
