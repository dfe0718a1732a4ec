"""Re-estimate BatchNorm population statistics after training.

During training every BatchNorm normalises with the statistics of its own
batch and keeps running averages (momentum 0.1) for eval mode. After a short
or fast-moving run those averages describe the last few batches of a network
that kept changing, not the trained network on the training distribution, and
eval-mode outputs suffer (a brightness-dependent bias). Recalibration runs the
finished network forward (no gradients, weights untouched) over many training
batches and sets every running mean/variance to the exact average over them.

The trainer does this at the end of every run (``TrainConfig.recalibrate_batches``
batches from its own patch sampler, see ``Trainer.recalibrate``);
``benchmarks/recalibrate_bundled.py`` did it once for the bundled weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def batchnorm_layers(network: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``network`` (empty for RED30)."""
    return [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(network: nn.Module, batches: Iterable[torch.Tensor],
                          progress: Callable[[int], None] | None = None) -> int:
    """Set every BatchNorm's running statistics to their average over ``batches``
    (input tensors shaped for ``network``). Returns the number of batches used;
    the network is left in eval mode. Weights are not changed."""
    bns = batchnorm_layers(network)
    if not bns:
        network.eval()
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    network.train()
    count = 0
    try:
        with torch.no_grad():
            for x in batches:
                network(x)
                count += 1
                if progress is not None:
                    progress(count)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        network.eval()
    if count == 0:
        raise ValueError("recalibrate_batchnorm needs at least one batch")
    return count


def freeze_batchnorm(network: nn.Module) -> None:
    """Put every BatchNorm of ``network`` in eval mode (normalise by the running statistics and keep
    them) whatever the mode of the rest: fine-tuning with frozen statistics (``TrainConfig.freeze_batchnorm``)."""
    for bn in batchnorm_layers(network):
        bn.eval()
