"""MHNet-style network: our own mixed-hierarchy encoder-decoder for deblurring (and deraining).

Written from the published summary of MHNet (Gao, Dang, arXiv 2302.09554; the facts in
``shared/reference/MEMNET.md``), not from its code, and not a reproduction of the paper's
network: the same ingredients, sized so that a small version trains on a 2-core CPU.

    y = x + tail(fuse_out(decoder(encoder(head(x))), full_res(head(x))))

* ``NAFBlock``: the activation-free block. LayerNorm over channels, 1x1 conv to 2C,
  3x3 depthwise conv, ``simple_gate`` (split the channels in two halves and multiply
  them: the only nonlinearity), ``SimplifiedChannelAttention`` (global average pool, a
  1x1 conv, a channel-wise product), 1x1 conv back to C, a residual scaled by a learnt
  per-channel ``beta`` (initialised to 0, so the block starts as the identity); then a
  feed-forward half: LayerNorm, 1x1 to 2C, SimpleGate, 1x1, residual scaled by ``gamma``.
* ``encoder``: ``depth`` levels; level l has ``channels * 2**l`` channels and ``blocks``
  NAF blocks, then a 2x2 stride-2 conv halves the size and doubles the channels.
* bottleneck: ``middle_blocks`` NAF blocks and one ``LinearAttention`` block: softmax
  over the channels of each query and over the pixels of each key, so the context is a
  (C/heads)^2 matrix per head and the cost is linear in the number of pixels.
* ``decoder``: per level a 1x1 conv and a pixel shuffle (double the size, halve the
  channels), a ``FeatureFusion`` of the upsampled features with the encoder's skip, then
  ``blocks`` NAF blocks.
* full-resolution branch: ``full_res_blocks`` NAF blocks on the head features, never
  downsampled (spatial detail), fused with the decoder's output by ``FeatureFusion``
  (a 1x1 conv over the concatenation, then a simplified-channel-attention gate).

The input is padded by edge replication to a multiple of ``alignment`` = 2**depth and the
output cropped back. Images are (N, in_channels, H, W) on the 0..1 scale.

Receptive field: GLOBAL. The channel attention pools over the whole image and the
linear attention mixes every pixel of the bottleneck, so no finite halo makes a tiled
result equal the untiled one. ``global_context = True`` tells the engine to blend
overlapping tiles (``core.tiling.blend_weights``); ``receptive_radius`` is the radius of
the convolutions alone (the halo it uses), and the remaining seam error is measured
(docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MHNetConfig:
    in_channels: int = 1
    channels: int = 16  # width at full resolution; level l has channels * 2**l
    depth: int = 3  # encoder levels (2x downsamplings)
    blocks: int = 1  # NAF blocks per encoder level and per decoder level
    middle_blocks: int = 1  # NAF blocks at the bottleneck (before the linear attention)
    full_res_blocks: int = 2  # NAF blocks of the full-resolution branch
    heads: int = 1  # heads of the bottleneck's linear attention

    def __post_init__(self):
        for name in ("in_channels", "channels", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MHNet {name} must be a positive integer, got {value!r}")
        for name in ("depth", "blocks", "middle_blocks", "full_res_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"MHNet {name} must be an integer >= 0, got {value!r}")
        if (self.channels << self.depth) % self.heads:
            raise ValueError(f"MHNet heads ({self.heads}) must divide the bottleneck's "
                             f"{self.channels << self.depth} channels")

    def to_dict(self) -> dict:
        return asdict(self)


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """SimpleGate: the two halves of the channels multiplied (2C -> C)."""
    a, b = x.chunk(2, dim=1)
    return a * b


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel, with a per-channel scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels last: the channels of a pixel are contiguous (free with channels_last tensors)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SimplifiedChannelAttention(nn.Module):
    """x * conv1x1(global average pool of x): one weight per channel, from the whole image."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(x.mean(dim=(2, 3), keepdim=True))


class NAFBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        c2 = 2 * channels
        self.norm1 = LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, c2, 1)
        self.depthwise = nn.Conv2d(c2, c2, 3, padding=1, groups=c2)
        self.sca = SimplifiedChannelAttention(channels)
        self.project = nn.Conv2d(channels, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.ffn_in = nn.Conv2d(channels, c2, 1)
        self.ffn_out = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = simple_gate(self.depthwise(self.expand(self.norm1(x))))
        x = x + self.beta * self.project(self.sca(t))
        t = self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))
        return x + self.gamma * t


class LinearAttention(nn.Module):
    """Self-attention of linear cost in the pixels (softmax of queries over channels, of keys over
    pixels; context = keys x values, a (C/heads)^2 matrix per head), then a feed-forward half."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm2d(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.norm2 = LayerNorm2d(channels)
        self.ffn_in = nn.Conv2d(channels, 2 * channels, 1)
        self.ffn_out = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        q = q.softmax(dim=2)  # over each head's channels
        k = k.softmax(dim=3)  # over the pixels
        context = k @ v.transpose(2, 3)  # (n, heads, d, d)
        attended = (context.transpose(2, 3) @ q).reshape(n, c, h, w)
        x = x + self.beta * self.out(attended)
        return x + self.gamma * self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))


class FeatureFusion(nn.Module):
    """Fuse two feature maps of C channels: 1x1 conv over their concatenation, gated per channel
    by simplified channel attention, plus the first input."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, channels, 1)
        self.sca = SimplifiedChannelAttention(channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + self.sca(self.mix(torch.cat([a, b], dim=1)))


def _stage(channels: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(NAFBlock(channels) for _ in range(n)))


class MHNet(nn.Module):
    """See the module docstring. ``forward(x, return_branches=False)`` like MemNet and RED30."""

    architecture = "mhnet"
    global_context = True  # channel attention and linear attention see the whole input

    def __init__(self, config: MHNetConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = MHNetConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an MHNetConfig or keyword arguments, not both")
        self.config = config
        c, d = config.channels, config.depth
        self.head = nn.Conv2d(config.in_channels, c, 3, padding=1)
        self.encoder = nn.ModuleList(_stage(c << i, config.blocks) for i in range(d))
        self.down = nn.ModuleList(nn.Conv2d(c << i, c << (i + 1), 2, stride=2) for i in range(d))
        self.middle = _stage(c << d, config.middle_blocks)
        self.attention = LinearAttention(c << d, config.heads)
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(c << (i + 1), c << (i + 2), 1), nn.PixelShuffle(2))
                                for i in range(d))
        self.fuse_skip = nn.ModuleList(FeatureFusion(c << i) for i in range(d))
        self.decoder = nn.ModuleList(_stage(c << i, config.blocks) for i in range(d))
        self.full_res = _stage(c, config.full_res_blocks)
        self.fuse_out = FeatureFusion(c)
        self.tail = nn.Conv2d(c, config.in_channels, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)  # start near the identity y = x
        nn.init.zeros_(self.tail.bias)

    @property
    def alignment(self) -> int:
        """Tiles start on multiples of this (2**depth: the encoder's downsampling grid)."""
        return 1 << self.config.depth

    @property
    def receptive_radius(self) -> int:
        """Radius of the convolutions alone (the tile halo); the attention makes the field global."""
        cfg = self.config
        r = 1  # head
        for i in range(cfg.depth):
            r += (1 << i) * (2 * cfg.blocks + 1)  # encoder and decoder blocks, the 2x2 down conv
        r += (1 << cfg.depth) * cfg.middle_blocks
        r += 1  # tail
        align = self.alignment
        return -(-r // align) * align

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    def forward(self, x: torch.Tensor, return_branches: bool = False):
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"MHNet expects (N, {self.config.in_channels}, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        a = self.alignment
        ph, pw = -h % a, -w % a
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        feats = self.head(xp)
        skips = []
        t = feats
        for stage, down in zip(self.encoder, self.down):
            t = stage(t)
            skips.append(t)
            t = down(t)
        t = self.attention(self.middle(t))
        for i in reversed(range(self.config.depth)):
            t = self.decoder[i](self.fuse_skip[i](self.up[i](t), skips[i]))
        t = self.fuse_out(t, self.full_res(feats))
        y = x + self.tail(t)[..., :h, :w]
        return (y, [y]) if return_branches else y
