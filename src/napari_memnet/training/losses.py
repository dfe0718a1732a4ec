"""Pixel losses of training (``TrainConfig.loss``) and the multi-supervised sum.

* ``l2``: the paper's Euclidean loss, mean squared error / 2 (Caffe's EuclideanLoss);
* ``l1``: mean absolute error;
* ``charbonnier``: mean of sqrt(d^2 + eps^2), eps = 1e-3 (a smooth L1);
* ``l1-balanced``: L1 with every sample (patch) of the batch weighted by 1 / (its own L1 + 0.01),
  the weights normalised to mean 1 and held constant in the backward pass. Its gradient is that of
  the batch mean of log(L1_i + 0.01): each patch's *relative* error counts alike, as in a mean of
  per-image PSNRs, so in blind denoising (sigma 0..75) the low-noise patches, whose errors are
  small in absolute terms, are not outweighed by the high-noise ones. The floor 0.01 (intensity
  1 = white, about 2.5 grey levels of 255) keeps nearly noise-free patches from taking over.
  It needs whole samples ((N, ...) tensors); the self-supervised objectives, which compare
  masked pixels, cannot use it (``TrainConfig.validate``).

``supervised_loss`` applies one of them to the final output, or, for a
multi-supervised MemNet, as the paper weights its branches:
alpha * loss(y) + (1 - alpha)/M * sum_m loss(y_m), alpha = 1/(M+1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.memnet import euclidean_loss

CHARBONNIER_EPS = 1e-3
BALANCE_FLOOR = 0.01


def balanced_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``l1-balanced`` of (N, ...) tensors: sum_i w_i L1_i / N, w_i = 1/(L1_i + floor) normalised to mean 1."""
    if pred.ndim < 2:
        raise ValueError(f"l1-balanced needs (N, ...) samples, got a tensor of shape {tuple(pred.shape)}")
    per_sample = (pred - target).abs().flatten(1).mean(1)
    with torch.no_grad():
        weights = 1.0 / (per_sample + BALANCE_FLOOR)
        weights = weights / weights.mean()
    return (weights * per_sample).mean()


def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target = pred.float(), target.float()
    if kind == "l2":
        return euclidean_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "charbonnier":
        return torch.sqrt((pred - target) ** 2 + CHARBONNIER_EPS**2).mean()
    if kind == "l1-balanced":
        return balanced_l1(pred, target)
    raise ValueError(f"unknown loss {kind!r}; expected l2, l1, charbonnier or l1-balanced")


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
