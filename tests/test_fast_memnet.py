"""The fast (space-to-depth) MemNet: shapes, the paper's residual, folding,
exact tiling with the unshuffle halo, model files, the dask path, training.

Networks are tiny (M2R2 C8) with random BatchNorm statistics so folding
matters; images are crops of the bundled public-domain astronaut photograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nets import random_memnet
from napari_memnet import load_model, restore, save_model
from napari_memnet.core.devices import default_tile_size
from napari_memnet.restoration.engine import Engine
from napari_memnet.restoration.eager import restore_plane
from napari_memnet.models import MemNetConfig, build_model, inference_module
from napari_memnet.models.memnet import depth_to_space, space_to_depth
from napari_memnet.sample_data import astronaut_uint8
from napari_memnet.core.tiling import tile_grid


def fast(s=2, seed=0) -> torch.nn.Module:
    """A tiny fast MemNet (M2R2 C8, space-to-depth ``s``) with random BatchNorm statistics."""
    return random_memnet(2, 2, 8, seed=seed, unshuffle=s)


@pytest.fixture
def image01():
    return astronaut_uint8()[:101, :77].astype(np.float32) / 255.0


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (31, 32)])
def test_shapes_and_branches(s, shape):
    net = fast(s)
    x = torch.rand(2, 1, *shape)
    final, branches = net(x, return_branches=True)
    assert final.shape == x.shape and len(branches) == 2 and all(b.shape == x.shape for b in branches)
    # the blocks see s*s channels at 1/s the size
    assert net.extract[2].in_channels == s * s and net.reconstruct.conv.out_channels == s * s


def test_space_to_depth_round_trip_and_config():
    x = torch.rand(1, 1, 9, 14)
    for s in (1, 2, 3):
        z = space_to_depth(x, s)
        assert z.shape == (1, s * s, -(-9 // s), -(-14 // s))
        assert torch.equal(depth_to_space(z, s, 9, 14), x)
    assert MemNetConfig(unshuffle=2).inner_channels == 4
    with pytest.raises(ValueError, match="unshuffle"):
        MemNetConfig(unshuffle=0)


def test_the_residual_is_to_the_input_as_in_the_paper():
    """With f_rec zeroed the fast net is the identity, exactly (shuffle(unshuffle(x)) = x)."""
    net = fast(2)
    with torch.no_grad():
        net.reconstruct.conv.weight.zero_()
        net.reconstruct.conv.bias.zero_()
        net.branch_weights.copy_(torch.tensor([0.25, 0.75]))
    x = torch.rand(1, 1, 15, 22)
    assert torch.allclose(net(x), x, atol=1e-6)


def test_receptive_radius_and_alignment():
    net = fast(2)  # unshuffled grid radius 1 + 2*2*2 + 1 = 10 -> 2 * 11 image pixels
    assert net.receptive_radius == 22 and net.alignment == 2
    assert fast(1).receptive_radius == 10 and fast(1).alignment == 1
    big = build_model("memnet", {"blocks": 4, "recursions": 4, "channels": 48, "unshuffle": 2})
    assert big.receptive_radius == 70
    # FLOPs: the blocks run on a quarter of the pixels
    paper = build_model("memnet", {"blocks": 4, "recursions": 4, "channels": 48})
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in paper.parameters())


@pytest.mark.parametrize("s", [2, 3])
def test_folding_is_exact_in_both_cpu_forms(s):
    net = fast(s)
    fused = inference_module(net)
    x = torch.rand(1, 1, 29, 34)
    with torch.no_grad():
        ref = net(x)
        z = space_to_depth(x, s)
        workspace = depth_to_space(fused.forward_in_workspace(z), s, 29, 34)
        allocating = depth_to_space(fused.forward_allocating(z), s, 29, 34)
        assert torch.allclose(fused(x), ref, atol=1e-5)
        assert torch.allclose(workspace, ref, atol=1e-5) and torch.allclose(allocating, ref, atol=1e-5)
        # channels_last input (what the engine hands it) gives the same numbers
        assert torch.allclose(fused(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)


def test_tiles_start_on_the_unshuffle_grid():
    for align in (2, 3, 4):
        tiles = tile_grid(101, 77, 20, 22, align)
        cores = {t.core for t in tiles}
        assert all(t.window[0] % align == 0 and t.window[2] % align == 0 for t in tiles)
        assert all(t.core[0] % align == 0 and t.core[2] % align == 0 for t in tiles)
        covered = np.zeros((101, 77), int)
        for y0, y1, x0, x1 in cores:
            covered[y0:y1, x0:x1] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("s", [2, 3])
def test_tiled_equals_untiled(s, image01):
    net = fast(s)
    untiled = restore_plane(net, image01, device="cpu", precision="fp32", tile_size=4096)
    with torch.no_grad():
        direct = net(torch.from_numpy(image01)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(untiled, direct, atol=1e-5)
    for tile in (16, 24, 37):
        tiled = restore_plane(net, image01, device="cpu", precision="fp32", tile_size=tile)
        assert np.abs(tiled - untiled).max() < 1e-4, tile
    engine = Engine(net, device="cpu", precision="fp32", tile_size=16)
    assert engine.align == s and engine.halo == net.receptive_radius


def test_default_cpu_tile_is_larger_for_a_fast_net():
    paper = build_model("memnet", {"blocks": 4, "recursions": 4, "channels": 48})
    fast2 = build_model("memnet", {"blocks": 4, "recursions": 4, "channels": 48, "unshuffle": 2})
    assert default_tile_size("cpu", fast2, "fp32") >= default_tile_size("cpu", paper, "fp32")


def test_save_load_round_trip(tmp_path, image01):
    net = fast(2, seed=5)
    info = save_model(net, "fast-tiny", task="denoise", directory=tmp_path)
    assert info.card["config"]["unshuffle"] == 2 and info.card["receptive_radius"] == 22
    loaded = load_model(tmp_path / "fast-tiny.safetensors")
    assert loaded.network.config.unshuffle == 2 and loaded.alignment == 2
    a = restore_plane(net, image01, device="cpu", precision="fp32")
    b = restore_plane(loaded, image01, device="cpu", precision="fp32")
    np.testing.assert_array_equal(a, b)


def test_a_card_without_unshuffle_is_the_paper_net(tmp_path):
    """Model files written before the fast MemNet existed load as s = 1."""
    import json

    net = build_model("memnet", {"blocks": 2, "recursions": 2, "channels": 8})
    save_model(net, "old", task="denoise", directory=tmp_path)
    card_path = tmp_path / "old.json"
    card = json.loads(card_path.read_text())
    del card["config"]["unshuffle"]
    card_path.write_text(json.dumps(card))
    assert load_model(card_path.with_suffix(".safetensors")).network.config.unshuffle == 1


@pytest.mark.parametrize("task,scale", [("denoise", None), ("sr", 2), ("sr", 3)])
def test_dask_path_equals_eager(task, scale):
    da = pytest.importorskip("dask.array")
    from napari_memnet.restoration.lazy import graph as lazy

    save_model(fast(2, seed=1), "fast-lazy", task=task)
    img = astronaut_uint8()
    stack = np.stack([img[:70, :58], img[50:120, 40:98]])
    eager = restore(stack, task, scale=scale, model="fast-lazy", device="cpu", precision="fp32")
    result = lazy.restore_dask(da.from_array(stack), task, scale=scale, model="fast-lazy", chunks=25,
                               device="cpu", precision="fp32")
    assert all(c % 2 == 0 for c in result.chunks[1][:-1])  # chunks on the unshuffle grid
    out = result.compute()
    assert out.shape == eager.shape and out.dtype == eager.dtype
    assert np.abs(out.astype(int) - eager.astype(int)).max() <= 1  # uint8: equal up to rounding


def test_train_and_fine_tune_a_fast_net(tmp_path):
    from napari_memnet import fine_tune
    from napari_memnet.training.config import TrainConfig
    from napari_memnet.training.trainer import Trainer

    img = astronaut_uint8()
    clean = [img[:96, :96], img[100:196, 100:196], img[150:246, 0:96]]
    cfg = TrainConfig(task="denoise", levels=(25, 25), arch={"blocks": 2, "recursions": 2, "channels": 8,
                      "unshuffle": 2}, steps=3, batch_size=2, patch_size=24, val_count=1, out_dir=str(tmp_path / "run"),
                      model_dir=str(tmp_path), name="fast-run")
    events = list(Trainer(cfg, clean=clean).run())
    assert events[-1].kind == "finished"
    model = load_model(tmp_path / "fast-run.safetensors")
    assert model.network.config.unshuffle == 2
    tuned = fine_tune(clean=clean, task="denoise", base_model=str(tmp_path / "fast-run.safetensors"),
                      name="fast-tuned", steps=2, batch_size=2, patch_size=24, levels=(25, 25),
                      model_dir=str(tmp_path))
    assert load_model(tuned.path).network.config.unshuffle == 2
