"""MHNet, the third architecture: shapes and odd sizes, its global receptive field, model files,
and tiling by overlap blending within the documented tolerance (docs/architecture.md: the tiled
result within 40 dB PSNR of the untiled one), eagerly and on the dask path.

Networks are tiny (C8, depth 2) with random block scales so every block and both attentions act;
the images are real (the bundled astronaut, BSD68)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _nets import random_mhnet
from napari_memnet import load_model, restore, save_model
from napari_memnet.core.metrics import psnr
from napari_memnet.core.tiling import Tile, blend_weights, tile_grid
from napari_memnet.models import MHNet, MHNetConfig, build_model
from napari_memnet.models.files import ModelFileError
from napari_memnet.restoration.engine import Engine
from napari_memnet.sample_data import astronaut_uint8

TILED_PSNR_DB = 40.0  # the documented tolerance: tiled vs untiled result (docs/architecture.md)


@pytest.fixture(scope="module")
def bsd_image(shared_data):
    path = shared_data / "test" / "BSD68" / "test001.png"
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float32) / 255.0


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (31, 32), (40, 24)])
def test_shapes_odd_sizes_and_the_common_interface(shape):
    net = random_mhnet()
    x = torch.rand(2, 1, *shape)
    final, branches = net(x, return_branches=True)
    assert final.shape == x.shape and len(branches) == 1 and branches[0] is final
    assert net(x).shape == x.shape
    assert net.in_channels == 1 and net.alignment == 4
    assert net.receptive_radius % net.alignment == 0 and net.receptive_radius > 0
    with pytest.raises(ValueError, match="MHNet expects"):
        net(torch.rand(1, 3, 8, 8))


def test_config_is_checked_and_width_and_depth_change_the_network():
    with pytest.raises(ValueError, match="channels"):
        MHNetConfig(channels=0)
    with pytest.raises(ValueError, match="heads"):
        MHNetConfig(channels=6, depth=1, heads=5)
    small = build_model("mhnet", {"channels": 8, "depth": 1, "blocks": 1})
    big = build_model("mhnet", {"channels": 16, "depth": 3, "blocks": 2})
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(big) > count(small)
    assert build_model("mhnet", {"depth": 0}).alignment == 1  # no encoder: the bottleneck at full size
    with pytest.raises(ValueError, match="unknown mhnet config keys"):
        build_model("mhnet", {"recursions": 2})


def test_a_fresh_network_starts_near_the_identity():
    """beta and gamma start at 0 (every block is the identity) and the tail is tiny."""
    net = build_model("mhnet", {"channels": 8, "depth": 2}).eval()
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        assert (net(x) - x).abs().max() < 0.05


def test_the_receptive_field_is_global():
    """A pixel far outside the convolutions' radius still changes the output: the channel
    attention pools over the whole input and the bottleneck's attention mixes every pixel."""
    net = random_mhnet()
    size = 4 * net.receptive_radius + 8
    x = torch.rand(1, 1, size, size)
    far = x.clone()
    far[0, 0, -1, -1] += 0.5
    with torch.no_grad():
        change = (net(far) - net(x))[0, 0, : net.receptive_radius // 2, : net.receptive_radius // 2]
    assert change.abs().max() > 0


def test_save_and_load_round_trip(tmp_path):
    net = random_mhnet(seed=3)
    info = save_model(net, "tiny-mhnet", task="denoise", directory=tmp_path)
    assert info.architecture == "mhnet" and info.card["config"]["channels"] == 8
    loaded = load_model(tmp_path / "tiny-mhnet.safetensors")
    assert isinstance(loaded.network, MHNet) and loaded.alignment == net.alignment
    x = torch.rand(1, 1, 19, 23)
    with torch.no_grad():
        assert torch.equal(loaded.network(x), net(x))


def test_a_bare_state_dict_needs_its_card(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(random_mhnet().state_dict(), path)
    with pytest.raises(ModelFileError, match="needs its .json model card"):
        load_model(path)


def test_blend_weights_cross_fade_between_tiles():
    tiles = tile_grid(50, 70, 24, 4)
    total = np.zeros((50, 70), np.float32)
    for tile in tiles:
        w = blend_weights(tile, 50, 70, 4)
        y0, y1, x0, x1 = tile.window
        assert w.shape == (y1 - y0, x1 - x0) and w.min() > 0 and w.max() == 1
        total[tile.window_slices] += w
    assert total.min() >= 1  # every pixel has at least one full-weight tile
    edge = blend_weights(Tile((0, 10, 0, 10), (0, 14, 0, 14)), 30, 10, 2)
    assert np.all(edge[:, :] == edge[:, :1])  # x is the whole width: no ramp along x
    assert edge[0, 0] == 1 and edge[-1, 0] < 0.25  # no ramp at the image border, a ramp inside


def test_one_tile_is_exact_and_many_tiles_blend_within_the_tolerance(bsd_image):
    net = random_mhnet()
    untiled = Engine(net, device="cpu", precision="fp32", tile_size=4096).runner().restore(bsd_image)
    assert np.abs(untiled - bsd_image).mean() > 1e-3  # the network changes the image
    with torch.no_grad():
        direct = net(torch.from_numpy(bsd_image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(untiled, direct, atol=1e-5)
    for tile in (64, 160):
        engine = Engine(net, device="cpu", precision="fp32", tile_size=tile)
        assert engine.blend and len(tile_grid(*bsd_image.shape, tile, engine.halo, engine.align)) > 1
        tiled = engine.runner().restore(bsd_image)
        assert psnr(tiled, untiled) >= TILED_PSNR_DB


def test_the_dask_path_blends_within_the_tolerance(tmp_path):
    da = pytest.importorskip("dask.array")
    save_model(random_mhnet(seed=1), "tiny-mhnet-dask", task="denoise", directory=tmp_path)
    model = str(tmp_path / "tiny-mhnet-dask.safetensors")
    image = astronaut_uint8()[:160, :200].astype(np.float32) / 255.0
    eager = restore(image, "denoise", model=model, device="cpu", precision="fp32", tile_size=4096)
    lazy = restore(da.from_array(image), "denoise", model=model, device="cpu", precision="fp32",
                   chunks=96)
    assert lazy.numblocks[0] > 1 and lazy.numblocks[1] > 1
    assert psnr(lazy.compute(), eager) >= TILED_PSNR_DB
