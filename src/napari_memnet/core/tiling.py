"""Split a plane into overlapping tiles and stitch the restored cores.

Every tile is a core of at most ``tile`` x ``tile`` output pixels plus a halo
of ``halo`` pixels of input context on each side (clipped at the image
border). With ``halo`` >= the network's receptive radius, each core pixel
sees exactly the context it sees in the untiled image (the network zero-pads
only at the real image border, which is also where the tile ends), so the
stitched result equals the untiled one up to float rounding. Cores are
balanced: a side of n pixels is cut into ceil(n / tile) nearly equal parts.

With ``align`` = a > 1 (a space-to-depth network, which is equivariant only to
shifts by multiples of a) every cut and the halo are multiples of a, so every
window starts on the a-grid of the image, as the untiled image does.

A network with a GLOBAL receptive field (MHNet: channel attention pools over the
whole input) cannot be tiled exactly. For it the engine blends instead of
cropping: each tile's whole window output is weighted by ``blend_weights``
(1 inside, falling linearly to near 0 over the 2 * halo pixels next to a window
edge that is not the image border) and the weighted sum is divided by the sum
of the weights, so neighbouring tiles cross-fade over their 2 * halo overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` rows/cols of the output and ``window`` rows/cols of the
    input (core + halo), both as (y0, y1, x0, x1) half-open ranges."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def crop(self) -> tuple[slice, slice]:
        """Where the core lies inside the window's output."""
        y0, y1, x0, x1 = self.core
        wy0, _, wx0, _ = self.window
        return slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0, y1), slice(x0, x1)

    @property
    def window_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)


def _cuts(n: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    if align > 1:
        tile = max(align, tile // align * align)
    parts = max(1, math.ceil(n / tile))
    edges = [min(n, round(i * n / parts / align) * align) for i in range(parts)] + [n]
    cuts = [(edges[i], edges[i + 1]) for i in range(parts)]
    return [c for c in cuts if c[1] > c[0]]


def align_up(value: int, align: int) -> int:
    """The smallest multiple of ``align`` that is >= ``value``."""
    return -(-int(value) // align) * align


def tile_grid(height: int, width: int, tile: int, halo: int, align: int = 1) -> list[Tile]:
    """Row-major tiles covering a ``height`` x ``width`` plane (cuts and halo on the ``align`` grid)."""
    if height < 1 or width < 1:
        raise ValueError(f"a plane must be at least 1x1, got {height}x{width}")
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile size must be a positive integer, got {tile!r}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    if not isinstance(align, int) or align < 1:
        raise ValueError(f"tile alignment must be a positive integer, got {align!r}")
    halo = align_up(halo, align)
    tiles = []
    for y0, y1 in _cuts(height, tile, align):
        for x0, x1 in _cuts(width, tile, align):
            window = (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo))
            tiles.append(Tile((y0, y1, x0, x1), window))
    return tiles


def count_tiles(height: int, width: int, tile: int, align: int = 1) -> int:
    return len(_cuts(height, tile, align)) * len(_cuts(width, tile, align))


def _ramp(lo: int, hi: int, n: int, halo: int) -> np.ndarray:
    """1-D weights of a window [lo, hi) of a side of n pixels: a linear ramp over the 2*halo
    pixels next to each end that is not the image border, 1 elsewhere (never 0)."""
    size = hi - lo
    weight = np.ones(size, np.float32)
    if halo <= 0:
        return weight
    width = 2 * halo
    d = np.arange(size, dtype=np.float32)
    if lo > 0:
        weight = np.minimum(weight, (d + 0.5) / width)
    if hi < n:
        weight = np.minimum(weight, (size - d - 0.5) / width)
    return weight


def blend_weights(tile: Tile, height: int, width: int, halo: int) -> np.ndarray:
    """The (window rows, window cols) float32 weights of ``tile``'s output in an overlap blend
    of a ``height`` x ``width`` plane (see the module docstring); every weight is > 0."""
    y0, y1, x0, x1 = tile.window
    return np.outer(_ramp(y0, y1, height, halo), _ramp(x0, x1, width, halo))
