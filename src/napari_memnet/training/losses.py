"""Pixel losses of training (``TrainConfig.loss``) and the multi-supervised sum.

* ``l2``: the paper's Euclidean loss, mean squared error / 2 (Caffe's EuclideanLoss);
* ``l1``: mean absolute error;
* ``charbonnier``: mean of sqrt(d^2 + eps^2), eps = 1e-3 (a smooth L1).

``supervised_loss`` applies one of them to the final output, or, for a
multi-supervised MemNet, as the paper weights its branches:
alpha * loss(y) + (1 - alpha)/M * sum_m loss(y_m), alpha = 1/(M+1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.memnet import euclidean_loss

CHARBONNIER_EPS = 1e-3


def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target = pred.float(), target.float()
    if kind == "l2":
        return euclidean_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "charbonnier":
        return torch.sqrt((pred - target) ** 2 + CHARBONNIER_EPS**2).mean()
    raise ValueError(f"unknown loss {kind!r}; expected l2, l1 or charbonnier")


def supervised_loss(kind: str, final: torch.Tensor, branches: list[torch.Tensor] | None,
                    target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(total loss, per-branch losses); ``branches`` None or empty: the final output alone."""
    final_loss = pixel_loss(kind, final, target)
    if not branches:
        return final_loss, []
    m = len(branches)
    alpha = 1.0 / (m + 1)
    branch_losses = [pixel_loss(kind, y, target) for y in branches]
    total = alpha * final_loss + (1.0 - alpha) / m * torch.stack(branch_losses).sum()
    return total, branch_losses
