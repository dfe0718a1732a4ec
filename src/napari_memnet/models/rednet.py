"""RED30 (Mao, Shen, Yang, NIPS 2016): a residual encoder-decoder.

15 convolutions then 15 transposed convolutions (3x3, C channels, stride 1,
ReLU after each), no pooling. A symmetric skip connection every 2 layers
adds the output of conv layer k to the output of its mirrored deconv layer,
then ReLU. The last deconv maps back to the input channels and the net learns
the residual: y = x + f(x). Images are (N, in_channels, H, W) on 0..1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RED30Config:
    in_channels: int = 1
    layers: int = 15  # convolutions; as many deconvolutions follow
    channels: int = 64
    skip_every: int = 2

    def __post_init__(self):
        for name in ("in_channels", "layers", "channels", "skip_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RED30 {name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class RED30(nn.Module):
    architecture = "red30"

    def __init__(self, config: RED30Config | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = RED30Config(**kwargs)
        elif kwargs:
            raise TypeError("pass either a RED30Config or keyword arguments, not both")
        self.config = config
        n, c = config.layers, config.channels
        self.convs = nn.ModuleList(
            nn.Conv2d(config.in_channels if i == 0 else c, c, 3, padding=1) for i in range(n)
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(c, config.in_channels if j == n - 1 else c, 3, padding=1) for j in range(n)
        )
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconvs[-1].weight, std=1e-3)

    @property
    def receptive_radius(self) -> int:
        return 2 * self.config.layers

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    def forward(self, x: torch.Tensor, return_branches: bool = False):
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"RED30 expects (N, {self.config.in_channels}, H, W) input, got {tuple(x.shape)}")
        n, every = self.config.layers, self.config.skip_every
        feats = []
        h = x
        for conv in self.convs:
            h = F.relu(conv(h))
            feats.append(h)
        for j, deconv in enumerate(self.deconvs[:-1], start=1):
            k = n - j  # the mirrored conv layer (1-based)
            h = deconv(h)
            if k % every == 0:
                h = h + feats[k - 1]
            h = F.relu(h)
        y = x + self.deconvs[-1](h)
        return (y, [y]) if return_branches else y
