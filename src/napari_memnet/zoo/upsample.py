"""MATLAB-bicubic upsampling by an integer scale as one torch module, for the
architecture source of an exported super-resolution package.

This file is copied verbatim into bioimage.io packages (``zoo/source.py``), so
it imports only torch. It holds no rule of its own: the taps come from
``napari_memnet.core.imresize`` (``zoo.source.upsample_taps``) and are passed
in as keyword arguments.

For an integer ``scale`` s, MATLAB's ``imresize`` gives output pixel
``o = k*s + p`` as ``sum_d taps[p][d] * x[k + first_tap + d]`` away from the
borders, with out-of-range input indices mirrored symmetrically
(``[.., x1, x0 | x0, x1, ..]``). So the upsampling is: pad symmetrically, a
stride-s transposed convolution per axis (the polyphase taps interleaved into
one kernel), and a constant crop. Rows first, then columns, like MATLAB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _symmetric_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Mirror ``pad`` samples at both ends of ``dim``, edge sample included."""
    if pad == 0:
        return x
    n = x.shape[dim]
    head = x.narrow(dim, 0, pad).flip(dim)
    tail = x.narrow(dim, n - pad, pad).flip(dim)
    return torch.cat([head, x, tail], dim=dim)


class BicubicUpsample(nn.Module):
    """(N, C, H, W) -> (N, C, s*H, s*W): MATLAB ``imresize(x, s)`` for integer s.

    ``taps[p]`` are the weights of phase p for input offsets ``first_tap ..
    first_tap + len(taps[p]) - 1``. No parameters or buffers: a network that
    holds one keeps its state dict. Inputs need at least ``pad`` pixels per axis."""

    def __init__(self, scale: int, taps, first_tap: int):
        super().__init__()
        self.scale = int(scale)
        self.taps = [[float(w) for w in phase] for phase in taps]
        self.first_tap = int(first_tap)
        if len(self.taps) != self.scale or len({len(p) for p in self.taps}) != 1:
            raise ValueError(f"expected {scale} phases of equal length, got {taps!r}")
        last_tap = self.first_tap + len(self.taps[0]) - 1
        self.pad = max(-self.first_tap, last_tap, 0)
        self._lead = (last_tap + self.pad) * self.scale  # output samples before the first kept one
        self._trail = (self.pad - self.first_tap) * self.scale

    def kernel(self, dtype, device) -> torch.Tensor:
        """The 1-D transposed-convolution kernel: phase p, offset d at ``p + (last - d) * s``."""
        s, n = self.scale, len(self.taps[0])
        k = torch.zeros(n * s, dtype=torch.float64)
        for p, phase in enumerate(self.taps):
            for j, w in enumerate(phase):
                k[p + (n - 1 - j) * s] = w
        return k.to(dtype=dtype, device=device)

    def _along(self, x: torch.Tensor, dim: int, k: torch.Tensor) -> torch.Tensor:
        x = _symmetric_pad(x, self.pad, dim)
        n, c, h, w = x.shape
        flat = x.reshape(n * c, 1, h, w)
        weight = k.view(1, 1, -1, 1) if dim == 2 else k.view(1, 1, 1, -1)
        stride = (self.scale, 1) if dim == 2 else (1, self.scale)
        y = F.conv_transpose2d(flat, weight, stride=stride)
        y = y.narrow(dim, self._lead, y.shape[dim] - self._lead - self._trail)
        return y.reshape(n, c, y.shape[2], y.shape[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        k = self.kernel(x.dtype, x.device)
        return self._along(self._along(x, 2, k), 3, k)
