"""Self-supervised training: a denoiser learnt from noisy images alone (no clean reference).

``SelfSupervisedTrainer`` is the ``Trainer`` (same loop, events, checkpoints,
resume, run-folder rule, BatchNorm recalibration, saving) with two things of
its own: the loss of a batch is made from the noisy batch alone, and
validation is that objective on held-out noisy images (there is nothing clean
to compute a PSNR against). Its data are ``noisy_data.prepare_noisy_data``'s.
Every architecture trains this way (paper and fast MemNet, RED30): the
objectives need only the network's forward. By default it fine-tunes the
bundled default denoiser of the CPU (``default_base_model``).

The two objectives (``TrainConfig.self_supervised``; measured side by side in
docs/self-supervised.md):

* ``neighbor2neighbor`` (Huang et al., CVPR 2021): every 2x2 cell of a noisy
  patch ``y`` gives one pixel to ``g1(y)`` and a 4-neighbour of it to ``g2(y)``
  (drawn at random), two half-size images with independent noise and almost
  the same signal. Loss: ``||f(g1 y) - g2 y||^2 + gamma ||f(g1 y) - g2 y - (g1 f(y)
  - g2 f(y))||^2`` (``f(y)`` without gradient; the regulariser makes up for the
  two images not sampling the same places), gamma = ``GAMMA``.
* ``blindspot`` (Noise2Self / Noise2Void masking): one pixel of every 4x4 cell
  (at random) is replaced by the mean of its 8 neighbours, and the loss is the
  error at those pixels only against their noisy values: a pixel's own noise
  cannot be copied to where it is scored. Masking works on the input, not on
  the architecture, so a space-to-depth (``unshuffle``) network, whose cells
  would break an architectural blind spot, trains the same way.

With independent zero-mean noise, both losses equal the error against the
clean image plus a constant, so they rank models as a clean PSNR would (for
the network's output on ``g1 y`` or on the masked input). Validation reports
that error as ``-10 log10(mse)`` against the noisy targets (``Validation.psnr``,
level ``"self-supervised"``; NOT a PSNR to a clean image) and the objective's
loss (``Validation.self_supervised_loss``), with the same randomness at every
validation.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..models.memnet import euclidean_loss
from .config import SELF_SUPERVISED, TrainConfig
from .events import Validation
from .intensity_maps import RESTORE
from .losses import supervised_loss
from .noisy_data import prepare_noisy_data
from .runs import check_outputs
from .trainer import Trainer

GAMMA = 2.0  # Neighbor2Neighbor's regulariser weight (the paper's)
MASK_CELL = 4  # blindspot: one masked pixel per MASK_CELL x MASK_CELL cell (1/16 of the pixels)
VALIDATION_SEED_OFFSET = 7_919  # the fixed sub-samplings / masks of validation: seed + this
LEVEL = "self-supervised"  # the per-level key of a self-supervised validation

# 2x2 cell positions 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1) and the two 4-neighbours of each
_NEIGHBOURS = ((1, 2), (0, 3), (0, 3), (1, 2))


def default_base_model() -> str:
    """The model a self-supervised run starts from when none is named: the bundled CPU default denoiser."""
    from ..models.files import default_model_name

    return default_model_name("denoise", "cpu")


def method_of(config: TrainConfig) -> str:
    return config.self_supervised or SELF_SUPERVISED[0]


# ---------------------------------------------------------------------- neighbor2neighbor
def _even(y: torch.Tensor) -> torch.Tensor:
    h, w = y.shape[-2:]
    return y[..., : h - h % 2, : w - w % 2]


def neighbour_indices(y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per 2x2 cell of ``y`` (N, 1, H, W; H, W even): a random position and a random 4-neighbour of it."""
    n, _, h, w = y.shape
    shape = (n, 1, h // 2, w // 2)
    first = torch.randint(0, 4, shape, generator=gen, device=y.device)
    pick = torch.randint(0, 2, shape, generator=gen, device=y.device)
    second = torch.tensor(_NEIGHBOURS, device=y.device)[first, pick]
    return first, second


def subsample(y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The half-size image of the pixel at ``index`` of every 2x2 cell of ``y``."""
    return F.pixel_unshuffle(y, 2).gather(1, index)


def neighbor2neighbor_loss(trainer: Trainer, y: torch.Tensor):
    y = _even(y)
    first, second = neighbour_indices(y, trainer.sampler.gen)
    g1, g2 = subsample(y, first), subsample(y, second)
    final, branches = trainer.outputs(g1)
    loss, branch_losses = supervised_loss(trainer.config.loss, final, branches, g2)
    with torch.no_grad():
        full = trainer.forward(y)
    gap = subsample(full, first) - subsample(full, second)
    return loss + GAMMA * euclidean_loss(final - g2, gap), branch_losses


# ---------------------------------------------------------------------- blindspot
def blindspot_mask(y: torch.Tensor, gen: torch.Generator, cell: int = MASK_CELL) -> torch.Tensor:
    """Boolean (N, 1, H, W): one pixel at a random place of every ``cell`` x ``cell`` cell."""
    n, _, h, w = y.shape
    gh, gw = -(-h // cell), -(-w // cell)
    where = torch.randint(0, cell * cell, (n, 1, gh, gw), generator=gen, device=y.device)
    onehot = torch.zeros((n, cell * cell, gh, gw), device=y.device).scatter_(1, where, 1.0)
    return F.pixel_shuffle(onehot, cell)[..., :h, :w] > 0.5


def neighbour_mean(y: torch.Tensor) -> torch.Tensor:
    """The mean of each pixel's 8 neighbours (edges reflected)."""
    kernel = torch.ones((1, 1, 3, 3), dtype=y.dtype, device=y.device) / 8.0
    kernel[..., 1, 1] = 0.0
    return F.conv2d(F.pad(y.contiguous(), (1, 1, 1, 1), mode="reflect"), kernel)


def blindspot_input(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, neighbour_mean(y), y)


def blindspot_loss(trainer: Trainer, y: torch.Tensor):
    mask = blindspot_mask(y, trainer.sampler.gen)
    final, branches = trainer.outputs(blindspot_input(y, mask))
    return supervised_loss(trainer.config.loss, final[mask], [b[mask] for b in branches or ()], y[mask])


LOSSES = {"neighbor2neighbor": neighbor2neighbor_loss, "blindspot": blindspot_loss}


def validation_errors(method: str, net, y: torch.Tensor, gen: torch.Generator) -> tuple[float, float]:
    """(mean squared error of the model, of the identity) of ``method``'s objective on one noisy image
    (the reconstruction term only; the identity: ``g1 y`` for ``g2 y``, the neighbour mean at the masked
    pixels)."""
    if method == "neighbor2neighbor":
        y = _even(y)
        first, second = neighbour_indices(y, gen)
        g1, g2 = subsample(y, first), subsample(y, second)
        return float(F.mse_loss(net(g1).float(), g2)), float(F.mse_loss(g1, g2))
    mask = blindspot_mask(y, gen)
    inp = blindspot_input(y, mask)
    return float(F.mse_loss(net(inp).float()[mask], y[mask])), float(F.mse_loss(inp[mask], y[mask]))


def _db(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


class SelfSupervisedTrainer(Trainer):
    """A ``Trainer`` over noisy images alone (module docstring).

    ``noisy``: a folder, image paths or arrays (default ``config.noisy_dir``); ``validation``: None
    (hold out ``val_count`` / ``val_fraction`` images) or held-out noisy images; ``data``: an already
    prepared ``TrainingData`` of source ``"noisy"``. Without ``config.init`` and architecture settings
    it fine-tunes ``default_base_model()`` (set into ``config.init``, so the checkpoint records it)."""

    def __init__(self, config: TrainConfig, *, noisy=None, validation=None, data=None, intensity: str = RESTORE,
                 resume: bool = False, overwrite: bool = False, **kwargs):
        if config.clean_dir or config.pairs_input_dir:
            raise ValueError("give exactly one training source: noisy images alone, clean images or pairs")
        check_outputs(config, resume=resume, overwrite=overwrite)  # before any data is read
        if config.init is None and not config.arch and config.architecture == "memnet":
            config.init = default_base_model()
        if data is None:
            data = prepare_noisy_data(config, noisy if noisy is not None else config.noisy_dir, validation,
                                      intensity=intensity)
        self.method = method_of(config)
        super().__init__(config, data=data, resume=resume, overwrite=overwrite, **kwargs)
        if config.freeze_batchnorm is None:  # from a model: its statistics (measured, docs/self-supervised.md)
            self.frozen_batchnorm = bool(config.init)

    def loss(self, inp, tgt):
        return LOSSES[self.method](self, inp)

    @torch.no_grad()
    def validate(self) -> Validation:
        """The objective on the held-out noisy images (eval mode, fp32, fixed randomness)."""
        t0 = time.perf_counter()
        net = self.model_network
        was_training = net.training
        net.eval()
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.config.seed + VALIDATION_SEED_OFFSET)
        errors = []
        try:
            for it in self.data.val:
                y = torch.from_numpy(np.ascontiguousarray(it.input, np.float32))[None, None].to(self.device)
                errors.append(validation_errors(self.method, net, y, gen))
        finally:
            net.train(was_training)
        mean = float(np.mean([_db(m) for m, _ in errors])) if errors else float("nan")
        base = float(np.mean([_db(i) for _, i in errors])) if errors else float("nan")
        loss = float(np.mean([m for m, _ in errors]) / 2) if errors else None
        per_level = {LEVEL: {"psnr": mean, "baseline_psnr": base, "items": len(errors)}}
        if self.history["base_model_psnr"] is None and self.step == 0:
            self.history["base_model_psnr"] = mean
            self.history["base_model_per_level"] = per_level
        self.history["baseline_psnr"] = base
        self.history["last"] = {"step": self.step, "psnr": mean, "per_level": per_level}
        return Validation(self.step, mean, base, self.history["base_model_psnr"], per_level,
                          time.perf_counter() - t0, self_supervised_loss=loss)
