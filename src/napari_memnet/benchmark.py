"""``memnet bench``: throughput and peak memory of ``restore`` against a plain
reference forward of the same weights.

(placeholder header; the benchmark logic follows)
"""

from __future__ import annotations


def random_memnet(blocks: int = 6, recursions: int = 6, channels: int = 64, *, seed: int = 0,
                  residual_std: float = 0.05):
    """An untrained MemNet with random weights AND random BatchNorm statistics
    (so folding is exercised for real) and a reconstruction conv large enough
    that the output visibly differs from the input. Speed does not depend on
    training, so benchmarks and tests use this when no trained model exists."""
    import torch

    from .models import build_model

    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = build_model("memnet", {"blocks": blocks, "recursions": recursions, "channels": channels})
    finally:
        torch.random.set_rng_state(torch_state)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
        w = net.reconstruct.conv.weight
        w.copy_(torch.randn(w.shape, generator=gen) * residual_std)
    return net.eval()
