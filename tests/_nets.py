"""Small untrained networks for the tests (no trained weights needed)."""

from __future__ import annotations

import torch

from napari_memnet.models import build_model


def random_memnet(blocks: int = 2, recursions: int = 2, channels: int = 8, *, seed: int = 0,
                  residual_std: float = 0.05, unshuffle: int = 1):
    """A MemNet with random weights and random BatchNorm statistics (so folding
    matters) whose reconstruction conv has weights of std ``residual_std``
    (the output visibly differs from the input). Seeded, without touching
    torch's global generator."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model("memnet", {"blocks": blocks, "recursions": recursions, "channels": channels,
                                     "unshuffle": unshuffle})
    ranges = {"running_mean": (-0.1, 0.1), "running_var": (0.5, 1.5), "weight": (0.5, 1.5), "bias": (-0.1, 0.1)}
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            for name, (low, high) in ranges.items():
                getattr(bn, name).uniform_(low, high, generator=gen)
        net.reconstruct.conv.weight.normal_(0.0, residual_std, generator=gen)
    return net.eval()


class OutOfMemoryAbove(torch.nn.Module):
    """``inner``, but "CUDA out of memory" for windows wider than ``width`` pixels."""

    def __init__(self, inner, width: int = 30):
        super().__init__()
        self.inner, self.width = inner, width

    def forward(self, x):
        if x.shape[-1] > self.width:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def random_mhnet(channels: int = 8, depth: int = 2, *, seed: int = 0, scale_std: float = 0.5,
                 residual_std: float = 0.05):
    """A small MHNet whose block scales (beta, gamma; zero at initialisation, which makes every
    block the identity) and tail are random, so every block and both attentions act. Seeded,
    without touching torch's global generator."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model("mhnet", {"channels": channels, "depth": depth})
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("beta", "gamma")):
                param.normal_(0.0, scale_std, generator=gen)
        net.tail.weight.normal_(0.0, residual_std, generator=gen)
    return net.eval()
