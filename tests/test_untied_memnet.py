"""Untied recursions (``shared_recursions=False``): each recursion of a memory block has its own two
convs. Same FLOPs as the paper's shared convs; untying a trained net computes what it did; folding,
tiling, model files (card and bare state dict) and training know it.

Networks are tiny (M2R2 C8) with random BatchNorm statistics; images are crops of the bundled
public-domain astronaut photograph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _nets import random_memnet
from napari_memnet import load_model, save_model
from napari_memnet.benchmark import conv_flops_per_pixel
from napari_memnet.models import MemNet, MemNetConfig, build_model, inference_module
from napari_memnet.models.files import ModelFileError
from napari_memnet.models.grow import grow_memnet
from napari_memnet.models.memnet import depth_to_space, space_to_depth
from napari_memnet.restoration.eager import restore_plane
from napari_memnet.sample_data import astronaut_uint8


def untied(base=None, s=2, seed=0) -> torch.nn.Module:
    """A tiny net untied from ``base`` (default: a random M2R2 C8), then its convs made to differ
    per recursion (so a form that mixed them up would show)."""
    base = base if base is not None else random_memnet(2, 2, 8, seed=seed, unshuffle=s)
    net = grow_memnet(base, shared_recursions=False).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for block in net.blocks:
            for r in range(net.config.recursions):
                for conv in block.recursive.convs(r):
                    conv.weight.add_(0.05 * torch.randn(conv.weight.shape, generator=gen))
    return net


@pytest.fixture
def image01():
    return astronaut_uint8()[:101, :77].astype(np.float32) / 255.0


def test_untied_convs_are_per_recursion_at_the_same_flops():
    shared = build_model("memnet", {"blocks": 2, "recursions": 3, "channels": 8, "unshuffle": 2})
    own = build_model("memnet", {"blocks": 2, "recursions": 3, "channels": 8, "unshuffle": 2,
                                 "shared_recursions": False})
    rec = own.blocks[0].recursive
    assert len({id(rec.convs(r)[0]) for r in range(3)}) == 3 and len({id(rec.convs(r)[1]) for r in range(3)}) == 3
    shared_rec = shared.blocks[0].recursive
    assert len({id(shared_rec.convs(r)[0]) for r in range(3)}) == 1
    conv_params = 2 * (8 * 8 * 9 + 8)  # one recursion's two convs
    extra = sum(p.numel() for p in own.parameters()) - sum(p.numel() for p in shared.parameters())
    assert extra == 2 * 2 * conv_params  # 2 blocks x (3 - 1) more recursions with their own convs
    assert conv_flops_per_pixel(own) == conv_flops_per_pixel(shared)


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("blocks,recursions", [(None, None), (2, 3), (3, 3)])
def test_untying_computes_what_the_shared_net_did(s, blocks, recursions):
    base = random_memnet(2, 2, 8, seed=3, unshuffle=s)
    with torch.no_grad():
        base.branch_weights.copy_(torch.tensor([0.3, 0.8]))
    grown = grow_memnet(base, blocks, recursions, shared_recursions=False).eval()
    assert grown.config.shared_recursions is False
    x = torch.rand(2, 1, 23, 30)
    with torch.no_grad():
        y0 = base(x)
        assert torch.allclose(grown(x), y0, atol=1e-6)
        assert torch.allclose(inference_module(grown)(x), y0, atol=1e-5)


def test_untied_nets_cannot_be_tied_again():
    net = untied()
    with pytest.raises(ValueError, match="cannot be tied again"):
        grow_memnet(net, shared_recursions=True)
    assert grow_memnet(net, 2, 3).config.shared_recursions is False  # growth keeps them untied


@pytest.mark.parametrize("s", [1, 2])
def test_folding_is_exact_for_untied_recursions(s):
    net = untied(s=s)
    fused = inference_module(net)
    x = torch.rand(1, 1, 29, 34)
    with torch.no_grad():
        ref = net(x)
        z = space_to_depth(x, s)
        assert torch.allclose(depth_to_space(fused.forward_in_workspace(z), s, 29, 34), ref, atol=1e-5)
        assert torch.allclose(depth_to_space(fused.forward_allocating(z), s, 29, 34), ref, atol=1e-5)
        # and untying mattered: the shared net it came from computes something else now
        assert not torch.allclose(random_memnet(2, 2, 8, seed=0, unshuffle=s)(x), ref, atol=1e-3)


def test_untied_tiled_equals_untiled(image01):
    net = untied(s=2)
    untiled = restore_plane(net, image01, device="cpu", precision="fp32", tile_size=4096)
    for tile in (16, 37):
        tiled = restore_plane(net, image01, device="cpu", precision="fp32", tile_size=tile)
        assert np.abs(tiled - untiled).max() < 1e-4, tile


def test_model_files_keep_untied_recursions(tmp_path, image01):
    net = untied(s=2, seed=4)
    info = save_model(net, "untied-tiny", task="denoise", directory=tmp_path)
    assert info.card["config"]["shared_recursions"] is False
    loaded = load_model(tmp_path / "untied-tiny.safetensors")
    assert loaded.network.config.shared_recursions is False
    np.testing.assert_array_equal(restore_plane(net, image01, device="cpu", precision="fp32"),
                                  restore_plane(loaded, image01, device="cpu", precision="fp32"))
    # a bare state dict (a user's .pt) says it by its keys
    plain = untied(random_memnet(2, 2, 8, seed=5), s=1)
    torch.save(plain.state_dict(), tmp_path / "bare.pt")
    bare = load_model(tmp_path / "bare.pt")
    assert bare.network.config.shared_recursions is False
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.allclose(bare.network.eval()(x), plain(x), atol=1e-6)


def test_a_bare_state_dict_says_its_space_to_depth_factor(tmp_path):
    """f_ext of a fast MemNet takes in_channels * s * s channels: gray s = 2 has 4, RGB s = 2 has 12."""
    x = torch.rand(1, 1, 21, 19)
    for in_channels, s in ((1, 2), (1, 3), (3, 2)):
        cfg = MemNetConfig(in_channels=in_channels, blocks=1, recursions=2, channels=8, unshuffle=s)
        net = MemNet(cfg).eval()
        torch.save(net.state_dict(), tmp_path / "bare.pt")
        bare = load_model(tmp_path / "bare.pt")
        assert (bare.network.config.in_channels, bare.network.config.unshuffle) == (in_channels, s)
        with torch.no_grad():
            xi = x.expand(1, in_channels, 21, 19)
            assert torch.allclose(bare.network.eval()(xi), net(xi), atol=1e-6)
    odd = MemNet(MemNetConfig(in_channels=2, blocks=1, recursions=1, channels=8))
    torch.save(odd.state_dict(), tmp_path / "odd.pt")
    with pytest.raises(ModelFileError, match="2 channels is neither gray nor RGB"):
        load_model(tmp_path / "odd.pt")


def test_a_card_without_shared_recursions_is_the_paper_sharing(tmp_path):
    """Model files written before untied recursions existed (the bundled SR model too) load shared."""
    save_model(random_memnet(2, 2, 8), "old", task="denoise", directory=tmp_path)
    card_path = tmp_path / "old.json"
    card = json.loads(card_path.read_text())
    del card["config"]["shared_recursions"]
    card_path.write_text(json.dumps(card))
    assert load_model(tmp_path / "old.safetensors").network.config.shared_recursions is True
    sr = load_model("memnet-fast-sr")
    assert "shared_recursions" not in sr.card["config"] and sr.network.config.shared_recursions is True


def test_config_refuses_a_non_boolean():
    with pytest.raises(ValueError, match="shared_recursions must be true or false"):
        MemNetConfig(shared_recursions="no")


def test_training_untied_from_a_shared_model(tmp_path):
    """``--init BASE --no-shared-recursions``: the trainer unties the base (step 0 computes what it did),
    trains and saves an untied model; the CLI flag lands in the architecture settings."""
    from napari_memnet.cli import build_parser
    from napari_memnet.commands.train import build_config
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    save_model(random_memnet(2, 2, 8, seed=6, unshuffle=2), "tiny-base", task="denoise", directory=tmp_path)
    args = build_parser().parse_args(["train", "--task", "denoise", "--init", str(tmp_path / "tiny-base.safetensors"),
                                      "--no-shared-recursions", "--out-dir", str(tmp_path / "cli")])
    assert build_config(args).arch == {"shared_recursions": False}
    img = astronaut_uint8()
    clean = [img[:96, :96], img[100:196, 100:196], img[150:246, 0:96]]
    cfg = TrainConfig(task="denoise", levels=(25, 25), init=str(tmp_path / "tiny-base.safetensors"),
                      arch={"shared_recursions": False}, steps=2, batch_size=2, patch_size=24, val_count=1,
                      out_dir=str(tmp_path / "run"), model_dir=str(tmp_path), name="tiny-untied",
                      recalibrate_batches=0, threads=1)
    trainer = Trainer(cfg, clean=clean)
    assert trainer.net.config.shared_recursions is False
    events = list(trainer.run())
    assert events[-1].kind == "finished"
    assert load_model(tmp_path / "tiny-untied.safetensors").network.config.shared_recursions is False
