"""An exponential moving average (EMA) of a network's weights.

    ema = WeightAverage(net, decay=0.999)
    ema.update(net)            # after every optimisation step
    ema.network                # a copy of ``net`` holding the averaged weights

Floating-point parameters and buffers (BatchNorm running statistics too) are
averaged as ``avg = decay * avg + (1 - decay) * current``; integer buffers
(``num_batches_tracked``) are copied. The first ``warmup`` updates use
``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by the
random initial weights. ``state_dict``/``load_state_dict`` save and restore it
exactly (the checkpoint keeps it, so a resumed run continues the same average).
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    def __init__(self, network: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.network = copy.deepcopy(network).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        d = self.current_decay()
        mine = self.network.state_dict()
        for key, value in network.state_dict().items():
            target = mine[key]
            if target.dtype.is_floating_point:
                target.mul_(d).add_(value.detach().to(target.dtype), alpha=1 - d)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.network.load_state_dict(state, strict=True)
        self.updates = int(updates)
