"""Tile grid geometry and tiled == untiled equality with real tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_memnet.restoration.engine import Engine
from napari_memnet.restoration.eager import restore_plane
from napari_memnet.models import build_model
from napari_memnet.core.tiling import count_tiles, tile_grid

from _nets import random_memnet


def tiny_memnet(seed=0):
    return random_memnet(2, 2, 8, seed=seed)


@pytest.mark.parametrize("h,w,tile,halo", [(1, 1, 4, 3), (10, 7, 4, 2), (33, 64, 16, 10), (5, 40, 64, 10)])
def test_cores_cover_every_pixel_once_and_windows_hold_cores(h, w, tile, halo):
    hits = np.zeros((h, w), int)
    tiles = tile_grid(h, w, tile, halo)
    assert len(tiles) == count_tiles(h, w, tile)
    for t in tiles:
        hits[t.core_slices] += 1
        y0, y1, x0, x1 = t.core
        wy0, wy1, wx0, wx1 = t.window
        assert y1 - y0 <= tile and x1 - x0 <= tile
        assert wy0 == max(0, y0 - halo) and wy1 == min(h, y1 + halo)
        assert wx0 == max(0, x0 - halo) and wx1 == min(w, x1 + halo)
        cy, cx = t.crop
        assert cy.stop - cy.start == y1 - y0 and cx.stop - cx.start == x1 - x0
    assert (hits == 1).all()


def test_cores_are_balanced():
    sizes = {t.core[1] - t.core[0] for t in tile_grid(100, 1, 30, 0)}
    assert sizes == {25}  # 4 parts of 25, not 30+30+30+10


@pytest.mark.parametrize("args", [(0, 5, 4, 1), (5, 0, 4, 1), (5, 5, 0, 1), (5, 5, 4, -1)])
def test_bad_grid_arguments(args):
    with pytest.raises(ValueError):
        tile_grid(*args)


def _untiled(net, img):
    with torch.inference_mode():
        return net.eval()(torch.from_numpy(img)[None, None])[0, 0].numpy()


@pytest.mark.parametrize("tile", [5, 16, 23])
def test_tiled_equals_untiled_memnet(tile):
    net = tiny_memnet(1)
    img = np.random.default_rng(0).random((45, 38)).astype(np.float32)  # sides not divisible by the tiles
    ref = _untiled(net, img)
    out = restore_plane(net, img, tile_size=tile, device="cpu")
    assert count_tiles(45, 38, tile) > 1
    assert np.abs(ref - img).max() > 1e-2  # the network really changes the image
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_tiled_equals_untiled_red30():
    torch.manual_seed(0)
    net = build_model("red30", {"layers": 3, "channels": 8}).eval()
    torch.nn.init.normal_(net.deconvs[-1].weight, std=0.1)
    img = np.random.default_rng(1).random((29, 31)).astype(np.float32)
    out = restore_plane(net, img, tile_size=8, device="cpu")
    np.testing.assert_allclose(out, _untiled(net, img), atol=1e-4, rtol=0)


def test_halo_smaller_than_receptive_radius_would_differ():
    """The halo is what makes tiling exact: a too-small halo changes the result."""
    net = tiny_memnet(2)
    img = np.random.default_rng(2).random((40, 40)).astype(np.float32)
    engine = Engine(net, device="cpu", tile_size=10)
    assert engine.halo == net.receptive_radius
    engine.halo = 1
    out = engine.runner().restore(img)
    assert np.abs(out - _untiled(net, img)).max() > 1e-3
